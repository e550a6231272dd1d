"""``meta/stats.json`` as LeRobot keeps it: per feature min, max, mean, std, count and the quantiles q01 .. q99,
computed exactly over the frames given (the export gives the train split's): vectors per channel, cameras per
colour channel in [0, 1] shaped (3, 1, 1). Quantiles are the inverted CDF (a value that occurs), for vectors and
for pixels (whose 256 levels are counted, so no pixel is sampled away).
"""

from __future__ import annotations

import numpy as np

from schemas.lerobot import QUANTILES

Stats = dict[str, list]


def vector_stats(values: np.ndarray) -> Stats:
    """(N, D) values (N > 0) -> each statistic as a list of D (count: [N])."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    stats: Stats = {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
                    "std": values.std(0).tolist(), "count": [len(values)]}
    for name, q in QUANTILES.items():
        stats[name] = np.quantile(values, q, axis=0, method="inverted_cdf").tolist()
    return stats


class PixelStats:
    """Every pixel of the frames added, counted per colour channel and level."""

    def __init__(self) -> None:
        self.counts = np.zeros((3, 256), np.int64)
        self.frames = 0

    def add(self, frames: np.ndarray) -> None:
        """(n, H, W, 3) uint8 RGB frames."""
        for c in range(3):
            self.counts[c] += np.bincount(frames[..., c].ravel(), minlength=256)
        self.frames += len(frames)

    def stats(self) -> Stats:
        levels = np.arange(256, dtype=np.float64) / 255.0
        total = self.counts.sum(1)
        if not self.frames or not total.all():
            raise ValueError("no frames were counted: the statistics need at least one")
        mean = (self.counts * levels).sum(1) / total
        std = np.sqrt(np.maximum((self.counts * levels**2).sum(1) / total - mean**2, 0.0))
        cdf = np.cumsum(self.counts, 1) / total[:, None]

        def per_channel(values: np.ndarray) -> list:
            return np.asarray(values, np.float64).reshape(3, 1, 1).tolist()

        present = self.counts > 0
        stats: Stats = {"min": per_channel([levels[p][0] for p in present]),
                        "max": per_channel([levels[p][-1] for p in present]),
                        "mean": per_channel(mean), "std": per_channel(std), "count": [self.frames]}
        for name, q in QUANTILES.items():
            stats[name] = per_channel([levels[np.searchsorted(cdf[c], q - 1e-12)] for c in range(3)])
        return stats
