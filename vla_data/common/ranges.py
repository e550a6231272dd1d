"""Episodes as frame ranges: a store keeps its episodes back to back and records where each ends
(``meta/episode_ends``: the frame after each episode's last, cumulative), so episode ``i`` holds frames
``[ends[i - 1], ends[i])`` (from 0 for the first). Every stage turns ends into ranges here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def ends_of(n_frames: Sequence[int] | np.ndarray) -> np.ndarray:
    """The ends of episodes of ``n_frames`` frames each, stored in that order."""
    return np.cumsum(np.asarray(n_frames, np.int64))


def episode_starts(ends: Sequence[int] | np.ndarray) -> np.ndarray:
    """The first frame of each episode."""
    ends = np.asarray(ends, np.int64)
    return np.concatenate([np.zeros(min(len(ends), 1), np.int64), ends[:-1]])


def episode_lengths(ends: Sequence[int] | np.ndarray) -> np.ndarray:
    """The frames of each episode."""
    return np.asarray(ends, np.int64) - episode_starts(ends)


def episode_range(ends: Sequence[int] | np.ndarray, episode: int) -> tuple[int, int]:
    """The frames ``[start, stop)`` of episode ``episode``."""
    return (int(ends[episode - 1]) if episode else 0), int(ends[episode])


def episode_ranges(ends: Sequence[int] | np.ndarray, episodes: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """The frames ``[start, stop)`` of each of ``episodes`` (every episode when None), in their order."""
    starts = episode_starts(ends)
    chosen = range(len(starts)) if episodes is None else episodes
    return [(int(starts[e]), int(ends[e])) for e in chosen]


def episode_of(ends: Sequence[int] | np.ndarray, frame: int) -> int:
    """The episode that frame ``frame`` belongs to."""
    return int(np.searchsorted(np.asarray(ends), frame, side="right"))
