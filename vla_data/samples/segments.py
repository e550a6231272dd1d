"""Segment batches (``Batching.segments``): runs of consecutive anchors of one episode, whose windows share
frames, so each frame is read, shipped and put through the backbone once per batch.

Pure numpy, like ``vla_data.samples.windows`` (whose window rule, pad frames included, it reuses): ``segment_index``
says which unique frames a run of anchors reads and where each window finds its frames among them;
``cut_segments`` cuts an episode's anchors into runs for one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.sample import WindowSpec
from vla_data.samples.windows import WindowIndex, window_index


@dataclass(frozen=True)
class SegmentIndex:
    frames: np.ndarray  # (F,) episode rows of the unique frames the segment's windows read, ascending
    windows: np.ndarray  # (L, W) position in ``frames`` of every window frame of every anchor
    anchors: list[WindowIndex]  # each anchor's window (its masks and action rows)


def segment_index(t: np.ndarray, n_frames: int, spec: WindowSpec) -> SegmentIndex:
    """The unique frames that the windows of anchors ``t`` (of one ``n_frames`` episode) read, and the table
    that gathers every window from them: ``frames[windows[j]]`` is ``window_index(t[j]).frames``."""
    anchors = [window_index(int(a), n_frames, spec) for a in t]
    rows = np.stack([ix.frames for ix in anchors])
    frames, where = np.unique(rows, return_inverse=True)
    return SegmentIndex(frames=frames, windows=where.reshape(rows.shape).astype(np.int64), anchors=anchors)


def cut_segments(count: int, length: int, rng: np.random.Generator | None) -> list[tuple[int, int]]:
    """``count`` consecutive anchors cut into ceil(count / length) runs of at most ``length``, as (start, stop).

    Every run is ``length`` long but one, which takes the remainder; ``rng`` puts that short run at a random
    place, so which anchors share a segment changes from epoch to epoch while the number of segments (and so
    an epoch's length) does not. ``rng=None``: the short run last (the store order, for validation)."""
    runs = -(-count // length)
    sizes = np.full(runs, length, np.int64)
    if runs:
        sizes[-1] = count - length * (runs - 1)
        if rng is not None:
            short = int(rng.integers(runs))
            sizes[[short, -1]] = sizes[[-1, short]]
    stops = np.cumsum(sizes)
    return [(int(b - s), int(b)) for b, s in zip(stops, sizes, strict=True)]
