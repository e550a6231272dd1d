"""Mirror augmentation: the scene seen left-right flipped, with the actions and words that go with it."""

from __future__ import annotations

import re

import numpy as np

from schemas.sample import MirrorRule


def mirror_words(instruction: str, rule: MirrorRule) -> str:
    """Swap each word pair (whole words, keeping a leading capital): left <-> right."""
    swap = {a: b for a, b in rule.swap_words} | {b: a for a, b in rule.swap_words}
    if not swap:
        return instruction

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        other = swap[word.lower()]
        return other.capitalize() if word[0].isupper() else other

    pattern = r"\b(" + "|".join(re.escape(w) for w in swap) + r")\b"
    return re.sub(pattern, replace, instruction, flags=re.IGNORECASE)


def mirror_sign(action_names: list[str], rule: MirrorRule) -> np.ndarray:
    """(A,) of +1/-1: which stored channels change sign in the mirrored scene."""
    return np.array([-1.0 if name in rule.negate else 1.0 for name in action_names], np.float32)


def mirror_frames(frames: np.ndarray) -> np.ndarray:
    """Flip (..., H, W, C) frames left-right."""
    return np.ascontiguousarray(frames[..., ::-1, :])
