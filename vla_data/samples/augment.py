"""Mirror augmentation: the scene seen left-right flipped, with the actions and words that go with it."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from schemas.fixes import Fix, SettingsRefusal
from schemas.recorder import DEFAULT_ACTION_NAMES, DEFAULT_MIRROR_NEGATE
from schemas.sample import MirrorRule
from schemas.store import ActionSelection

NEGATE_SETTING = "data.mirror.negate_channels in the train config"  # elsewhere the fix's mirror.negate_channels
NEGATE = Fix({"mirror.negate_channels": "C,C"}, "(the recorder indices of the channels that change sign)")


GLUE = frozenset({"Lu", "Ll", "Lt", "Nd", "Pc"})  # cased letters, digits, _: these make a longer word


def _glued(text: str, at: int) -> bool:
    """Whether the character at ``at`` joins a side word beside it into a longer word (left -> leftover).

    Cased letters do (Latin, Greek, Cyrillic: words are separated by spaces there). Uncased letters do not:
    Hangul particles (왼쪽에, 왼쪽으로) and CJK text without spaces keep the side word a side word.
    """
    return 0 <= at < len(text) and unicodedata.category(text[at]) in GLUE


def side_words(instruction: str, rule: MirrorRule) -> list[re.Match[str]]:
    """The side words of ``instruction`` (``rule.pairs``, any case), left to right."""
    words = sorted({w for pair in rule.pairs for w in pair}, key=len, reverse=True)  # longest first
    found = re.finditer("|".join(re.escape(w) for w in words), instruction, flags=re.IGNORECASE)
    return [m for m in found if not _glued(instruction, m.start() - 1) and not _glued(instruction, m.end())]


def mirror_words(instruction: str, rule: MirrorRule) -> str:
    """Swap each side word with its pair's other word (left <-> right), keeping its capitals."""
    swap = {a.lower(): b for a, b in rule.pairs} | {b.lower(): a for a, b in rule.pairs}
    out, done = [], 0
    for match in side_words(instruction, rule):
        word, other = match.group(0), swap[match.group(0).lower()]
        if word.isupper() and len(word) > 1:
            other = other.upper()
        elif word[0].isupper():
            other = other.capitalize()
        out += [instruction[done : match.start()], other]
        done = match.end()
    return "".join(out) + instruction[done:]


def mirror_sign(actions: ActionSelection, rule: MirrorRule) -> np.ndarray:
    """(A,) of +1/-1 over the stored channels: -1 where the stored channel is a recorder channel the rule
    negates (by what it is in the recorder's row, whatever it was named).

    ``ValueError`` naming the setting to give where the rule cannot tell: no ``negate_channels`` and a
    recorder that is not the teleop one, or a channel the recorder does not write.
    """
    kept = f"kept {actions.channels}, dropped {[d.channel for d in actions.dropped]}"
    negate = rule.negate_channels
    if negate is None:
        if actions.recorder_dim != len(DEFAULT_ACTION_NAMES):
            raise SettingsRefusal(
                f"augment=mirror: the store's recorder has {actions.recorder_dim} action channels ({kept}), not the "
                f"teleop recorder's {len(DEFAULT_ACTION_NAMES)} ({', '.join(DEFAULT_ACTION_NAMES)}), so which of "
                f"them change sign in a mirror is unknown; list their recorder indices in {NEGATE_SETTING}", NEGATE
            )
        negate = DEFAULT_MIRROR_NEGATE
    unknown = [c for c in negate if c >= actions.recorder_dim]
    if unknown:
        raise SettingsRefusal(f"augment=mirror: negate_channels {unknown} are not channels of the store's recorder "
                              f"({kept}); fix {NEGATE_SETTING}", NEGATE)
    return np.array([-1.0 if c in negate else 1.0 for c in actions.channels], np.float32)


def mirror_frames(frames: np.ndarray) -> np.ndarray:
    """Flip (..., H, W, C) frames left-right."""
    return np.ascontiguousarray(frames[..., ::-1, :])
