"""What every PNG the commands draw shares: fonts that have the text's characters, the path check and an
atomic save."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text

from vla_data.common.files import atomic_path

CJK_FONT_PACKAGE = "fonts-noto-cjk"  # Korean, Chinese, Japanese: the instructions' scripts besides Latin
OTHER_FONT_PACKAGE = "fonts-noto-core"
# matplotlib's own placeholder font: it maps every character, each to a box, so it never "has" one
LAST_RESORT = Path(matplotlib.get_data_path(), "fonts", "ttf", "LastResortHE-Regular.ttf").resolve()
GLYPH_MISSING = r"Glyph \d+ .* missing from font"  # matplotlib's warning, one per character and text


class MissingGlyphs(UserWarning):
    """A figure's text has characters no installed font has; they are drawn as boxes."""


def require_png(path: Path) -> Path:
    """``path`` if it ends in .png, else ValueError saying so."""
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: the plot is a PNG; give a path ending in .png, not {path.suffix!r}")
    return path


@cache
def _charmap(path: str, index: int = 0) -> frozenset[int]:
    """The characters a font file (face ``index``) has a glyph for."""
    if Path(path).resolve() == LAST_RESORT:
        return frozenset()
    try:
        return frozenset(FT2Font(path, face_index=index).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def _fonts_of(text: Text) -> list[str]:
    """The families ``text`` is drawn with, in fallback order."""
    family = text.get_fontfamily()
    return [family] if isinstance(family, str) else list(family)


def _has(families: list[str], text: Text) -> frozenset[int]:
    """The characters the fonts of ``families`` (at ``text``'s style and weight) have."""
    prop = text.get_fontproperties().copy()
    found: frozenset[int] = frozenset()
    for family in families:
        prop.set_family(family)
        path = font_manager.findfont(prop)
        found |= _charmap(str(path), getattr(path, "face_index", 0))
    return found


def covering_families(chars: set[int]) -> tuple[list[str], set[int]]:
    """Installed font families that together have ``chars`` (the one with most of them first), and the
    characters none has."""
    fonts = font_manager.fontManager.ttflist
    families: list[str] = []
    left = set(chars)
    while left:
        best = max(fonts, key=lambda f: (len(left & _charmap(f.fname, f.index)), f.style == "normal", f.name))
        got = left & _charmap(best.fname, best.index)
        if not got:
            break
        families.append(best.name)
        left -= got
    return families, left


def use_covering_fonts(fig: Figure) -> list[str]:
    """Give each text of ``fig`` whose characters its fonts lack the installed fonts that have them (as
    fallbacks after its own); return the characters no installed font has, in the order met."""
    for ax in fig.axes:  # tick labels get their final text only when asked for
        ax.get_xticklabels(), ax.get_yticklabels()
    missing: dict[str, None] = {}
    for text in fig.findobj(Text):
        wanted = {ord(c) for c in text.get_text() if c.isprintable() and not c.isspace() and not c.isascii()}
        # (ASCII is in every default font)
        if not wanted:
            continue
        families = _fonts_of(text)
        lacking = wanted - _has(families, text)
        if lacking:
            extra, none = covering_families(lacking)
            if extra:
                text.set_fontfamily(families + [f for f in extra if f not in families])
            missing |= {c: None for c in text.get_text() if ord(c) in none}
    return list(missing)


def save_png(fig: Figure, out: Path, dpi: int) -> Path:
    """Write ``fig`` to ``out`` through a temporary file, so an interrupted save leaves no partial PNG.

    Text in a script the default font lacks (a Korean instruction) is drawn with an installed font that has
    it; when none has, one warning says what to install instead of matplotlib's warning per character."""
    require_png(out)
    missing = use_covering_fonts(fig)
    with warnings.catch_warnings():
        if missing:
            sample = "".join(missing[:8]) + ("..." if len(missing) > 8 else "")
            warnings.warn(MissingGlyphs(
                f"{len(missing)} character(s) of the figure's text ({sample}) are in no installed font and are "
                f"drawn as boxes: install a font that has them, e.g. {CJK_FONT_PACKAGE} for Korean, Chinese or "
                f"Japanese ({OTHER_FONT_PACKAGE} for other scripts), then delete "
                f"{Path(matplotlib.get_cachedir(), 'fontlist-*.json')} so matplotlib finds it"
            ), stacklevel=2)
            warnings.filterwarnings("ignore", message=GLYPH_MISSING)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    return out
