"""Window and chunk indexing inside one episode: which frames and action rows a sample at anchor t reads.

Pure numpy and episode-relative (row 0 is the episode's first frame), so no window can read across an
episode boundary: every index is clipped to [0, n) of its own episode and the masks say what is padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.sample import WindowSpec


@dataclass(frozen=True)
class WindowIndex:
    frames: np.ndarray  # (W,) frame rows, the first frame repeated before the start
    frame_mask: np.ndarray  # (W,) bool, False on repeated frames
    rows: np.ndarray  # (W, K) action rows, clipped into the episode (gather with ``actions[rows]``)
    chunk_mask: np.ndarray  # (W, K) bool, False past the episode end and on every step of a repeated frame
    past_end: np.ndarray  # (W, K) bool, True where the action is the zero-velocity pad


def window_index(t: int, n_frames: int, spec: WindowSpec) -> WindowIndex:
    """The rows that the sample anchored at frame ``t`` of an ``n_frames`` episode reads."""
    if not 0 <= t < n_frames:
        raise IndexError(f"anchor {t} outside an episode of {n_frames} frames")
    tau = t - spec.window + 1 + np.arange(spec.window)
    frame_mask = tau >= 0
    frames = np.maximum(tau, 0)
    rows = frames[:, None] + spec.action_offset + np.arange(spec.chunk)[None, :]
    past_end = rows >= n_frames
    return WindowIndex(
        frames=frames,
        frame_mask=frame_mask,
        rows=np.minimum(rows, n_frames - 1),
        chunk_mask=frame_mask[:, None] & ~past_end,
        past_end=past_end,
    )


def anchors(n_frames: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor of the given episodes, in order: (position of the episode in ``n_frames``, t)."""
    per_episode = [np.arange(0, n, stride) for n in n_frames]
    which = np.repeat(np.arange(len(n_frames)), [len(a) for a in per_episode])
    t = np.concatenate(per_episode) if per_episode else np.zeros(0, np.int64)
    return which.astype(np.int64), t.astype(np.int64)


def anchor_chunks(actions: np.ndarray, t: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """The recorded chunk after each anchor t (the last window frame's rows t+o..t+o+K-1) and its mask.

    ``actions`` (n, A) of one episode -> (len(t), K, A) float32 with zero velocity past the end, (len(t), K) bool.
    """
    last = [window_index(int(a), len(actions), spec) for a in t]
    rows = np.stack([ix.rows[-1] for ix in last]) if last else np.zeros((0, spec.chunk), np.int64)
    past = np.stack([ix.past_end[-1] for ix in last]) if last else np.zeros((0, spec.chunk), bool)
    return np.where(past[..., None], np.float32(0), actions[rows]).astype(np.float32), ~past
