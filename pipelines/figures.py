"""What every PNG the commands draw shares: the path check and an atomic save."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from vla_data.files import atomic_path


def require_png(path: Path) -> Path:
    """``path`` if it ends in .png, else ValueError saying so."""
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: the plot is a PNG; give a path ending in .png, not {path.suffix!r}")
    return path


def save_png(fig: Figure, out: Path, dpi: int) -> Path:
    """Write ``fig`` to ``out`` through a temporary file, so an interrupted save leaves no partial PNG."""
    require_png(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out
