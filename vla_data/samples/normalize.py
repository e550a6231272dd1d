"""Action normalisation with a store's train stats: ``(x - offset) / scale`` per channel, and back."""

from __future__ import annotations

import numpy as np

from schemas.store import NormStats


class Normalizer:
    """Normalise and denormalise (..., A) actions; ``denormalize(normalize(x)) == x`` up to float32 rounding."""

    def __init__(self, stats: NormStats) -> None:
        offsets, scales = stats.offset_scale()
        self.stats = stats
        self.offset = np.asarray(offsets, np.float64)
        self.scale = np.asarray(scales, np.float64)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        return ((np.asarray(actions, np.float64) - self.offset) / self.scale).astype(np.float32)

    def denormalize(self, actions: np.ndarray) -> np.ndarray:
        return (np.asarray(actions, np.float64) * self.scale + self.offset).astype(np.float32)

    def zero_velocity(self) -> np.ndarray:
        """The normalised value of standing still (the pad past an episode's end)."""
        return self.normalize(np.zeros_like(self.offset))
