"""Filling a store's camera arrays shard by shard, so that each shard file is written whole, by exactly one process.

A store's frames come from pieces: frame ranges of recorder files or bags (decoded, converted to RGB and resized)
or of the previous store (copied as they are). ``plan_shards`` cuts that sequence at shard boundaries;
``write_shard`` fills one shard and returns the image moments of what it wrote, per episode, so the
train-split image statistics need no second pass. ``fill_frames`` runs the shards in-process or on a
spawned process pool (spawn: workers start clean, whatever threads the parent runs). Workers ignore Ctrl-C:
the parent alone handles it, cancels the shards not started and waits for the running ones, so the caller
can remove the staging folder knowing no worker still writes into it.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from schemas import ColorOrder
from schemas.store import Preprocessing
from vla_data.bags import FrameRefs, iter_frames
from vla_data.recorder import open_episode
from vla_data.resize import resize_frame, resize_frames
from vla_data.stats import ImageMoments


@dataclass(frozen=True)
class EpisodeSource:
    """Where one stored episode's frames of one camera come from: a recorder file, a bag, or the previous store's
    array."""

    episode: int
    n_frames: int
    path: Path
    frames_key: str | None  # the recorder's frames dataset; None: ``path`` is a store camera array, at ``offset``
    offset: int = 0
    color_order: ColorOrder = ColorOrder.rgb  # of the recorder's frames (a store's are RGB)
    bag_frames: FrameRefs | None = None  # a bag's: the camera messages that are the episode's frames


@dataclass(frozen=True)
class Piece:
    """Frames [source_start, source_start + n) of one episode, landing at store frame ``start``."""

    source: EpisodeSource
    source_start: int
    start: int
    n: int


@dataclass(frozen=True)
class ShardTask:
    array_path: Path  # the camera array it fills
    start: int
    stop: int
    pieces: tuple[Piece, ...]
    preprocessing: Preprocessing


def plan_shards(
    sources: list[EpisodeSource], array_path: Path, frames_per_shard: int, pre: Preprocessing
) -> list[ShardTask]:
    """One task per shard of one camera array of the store, in store order (sources are laid out in list order)."""
    pieces: list[Piece] = []
    cursor = 0
    for source in sources:
        done = 0
        while done < source.n_frames:
            room = frames_per_shard - (cursor % frames_per_shard)
            n = min(room, source.n_frames - done)
            pieces.append(Piece(source, done, cursor, n))
            done += n
            cursor += n
    tasks: dict[int, list[Piece]] = {}
    for piece in pieces:
        tasks.setdefault(piece.start // frames_per_shard, []).append(piece)
    return [
        ShardTask(array_path, k * frames_per_shard, min((k + 1) * frames_per_shard, cursor), tuple(group), pre)
        for k, group in sorted(tasks.items())
    ]


def _read(piece: Piece, pre: Preprocessing) -> np.ndarray:
    src, a, b = piece.source, piece.source_start, piece.source_start + piece.n
    if src.bag_frames is not None:
        refs = FrameRefs(src.bag_frames.topic, src.bag_frames.refs[a:b])
        return np.stack([resize_frame(frame, pre, order) for frame, order in iter_frames(src.path, refs)])
    if src.frames_key is None:
        return np.asarray(zarr.open_array(src.path, mode="r")[src.offset + a : src.offset + b])
    with open_episode(src.path) as f:
        return resize_frames(f[src.frames_key][a:b], pre, src.color_order)


def write_shard(task: ShardTask) -> tuple[int, dict[int, ImageMoments]]:
    """Fill one shard in one write; the frames written and their moments per episode."""
    block = np.empty((task.stop - task.start, *zarr.open_array(task.array_path, mode="r").shape[1:]), np.uint8)
    moments: dict[int, ImageMoments] = {}
    for piece in task.pieces:
        frames = _read(piece, task.preprocessing)
        block[piece.start - task.start : piece.start - task.start + piece.n] = frames
        moments.setdefault(piece.source.episode, ImageMoments()).add(frames)
    zarr.open_array(task.array_path, mode="r+")[task.start : task.stop] = block
    return task.stop - task.start, moments


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _results(tasks: list[ShardTask], workers: int) -> Iterator[tuple[ShardTask, tuple[int, dict[int, ImageMoments]]]]:
    if workers <= 1:
        for task in tasks:
            yield task, write_shard(task)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupt)
    try:
        # the workers start while submitting: with SIGINT ignored here they inherit the ignore from their first
        # instruction on (Python keeps an inherited SIG_IGN), so a Ctrl-C never lands in a starting worker
        main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            pending = {pool.submit(write_shard, task): task for task in tasks}
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, handler)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:  # also on Ctrl-C, a failed shard or the caller giving up: no worker writes after this returns
        pool.shutdown(wait=True, cancel_futures=True)


def fill_frames(
    tasks: list[ShardTask], workers: int, progress: Callable[[int, int], None] | None = None
) -> dict[int, ImageMoments]:
    """Write every shard; ``progress(frames, episodes)`` after each, with the episodes it completed."""
    remaining: dict[int, int] = {}
    for task in tasks:
        for piece in task.pieces:
            remaining[piece.source.episode] = remaining.get(piece.source.episode, 0) + piece.n
    moments: dict[int, ImageMoments] = {}
    for task, (n_frames, shard_moments) in _results(tasks, workers):
        finished = 0
        for piece in task.pieces:
            remaining[piece.source.episode] -= piece.n
            finished += remaining[piece.source.episode] == 0
        for episode, m in shard_moments.items():
            moments.setdefault(episode, ImageMoments()).merge(m)
        if progress:
            progress(n_frames, finished)
    return moments
