"""Exact train-split statistics: actions per channel, and image mean/std per RGB channel."""

from __future__ import annotations

import numpy as np

from schemas.segments import ImageSums
from schemas.store import ChannelStats


def action_stats(actions: np.ndarray) -> list[ChannelStats]:
    """Exact per-channel statistics of (N, A) actions (quantiles over all N rows, never averaged)."""
    if actions.ndim != 2 or actions.shape[0] == 0:
        raise ValueError(f"need (N, A) actions with N > 0, got shape {actions.shape}")
    a = actions.astype(np.float64)
    q01, q99 = np.quantile(a, [0.01, 0.99], axis=0)
    return [
        ChannelStats(
            count=int(a.shape[0]),
            mean=float(a[:, c].mean()),
            std=float(a[:, c].std()),
            min=float(a[:, c].min()),
            max=float(a[:, c].max()),
            q01=float(q01[c]),
            q99=float(q99[c]),
        )
        for c in range(a.shape[1])
    ]


class ImageMoments:
    """Running per-channel sums over uint8 RGB frames; exact (integer sums), in any order of blocks."""

    def __init__(self) -> None:
        self.n = 0
        self.total = np.zeros(3, np.float64)
        self.total_sq = np.zeros(3, np.float64)

    def add(self, frames: np.ndarray) -> None:
        pixels = frames.reshape(-1, 3)
        self.n += pixels.shape[0]
        self.total += pixels.sum(axis=0, dtype=np.uint64)
        self.total_sq += np.einsum("ij,ij->j", pixels, pixels, dtype=np.uint64)

    @classmethod
    def of(cls, sums: ImageSums) -> ImageMoments:
        moments = cls()
        moments.n, moments.total, moments.total_sq = sums.pixels, np.array(sums.total), np.array(sums.total_sq)
        return moments

    def sums(self) -> ImageSums:
        return ImageSums(pixels=self.n, total=self.total.tolist(), total_sq=self.total_sq.tolist())

    def merge(self, other: ImageMoments) -> None:
        self.n += other.n
        self.total += other.total
        self.total_sq += other.total_sq

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Mean and std per channel on the 0..1 scale."""
        if self.n == 0:
            raise ValueError("no frames")
        mean = self.total / self.n
        var = np.maximum(self.total_sq / self.n - mean**2, 0.0)
        return (mean / 255).tolist(), (np.sqrt(var) / 255).tolist()
