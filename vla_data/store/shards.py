"""Filling a store's camera arrays shard by shard, so that each shard object is written whole, by exactly one task.

A store's frames come from pieces: frame ranges of source episodes (decoded, converted to RGB and resized)
or of the previous version (copied as they are). ``plan_shards`` cuts that sequence at shard boundaries;
``write_shard`` fills one shard, straight into the store (a local folder or object storage), and returns only
small results: the image moments of what it wrote, per episode (the train-split image statistics need no
second pass), and the sha256 of the shard object (the manifest's checksums need no second read). The caller
never holds frames.

``fill_frames`` runs the shards in-process, or through ``vla_data.common.pools.run_as_completed``: a spawned
process pool (``workers``) or a Dask cluster (``scheduler``), one ``concurrent.futures`` executor either way. A
Dask worker that dies mid-shard has its task run again elsewhere; a shard is written whole from its sources, so
the retry writes the same bytes. Local workers ignore Ctrl-C (as every caller of ``vla_data.common.pools``): the
parent alone handles it, cancels the shards not started and waits for the running ones, so the caller can remove the
unfinished version knowing no worker still writes into it (a Dask task already running cannot be stopped:
what it writes after lands in an unfinished version, a leftover the next build or `vla-data gc` removes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np
import zarr

from schemas.store import Preprocessing
from vla_data.common.pools import run_as_completed
from vla_data.common.resize import resize_frames
from vla_data.sources.episode import FrameReader
from vla_data.store.location import StoreLocation
from vla_data.store.stats import ImageMoments


@dataclass(frozen=True)
class EpisodeSource:
    """Where one stored episode's frames of one camera come from: a source episode's frames (decoded, converted
    to RGB and resized), or the previous version's camera array (``stored``, from ``offset``: copied as they are)."""

    episode: int
    n_frames: int
    frames: FrameReader | None  # the source episode's camera; None: copied from ``stored``
    offset: int = 0
    stored: StoreLocation | None = None


@dataclass(frozen=True)
class Piece:
    """Frames [source_start, source_start + n) of one episode, landing at store frame ``start``."""

    source: EpisodeSource
    source_start: int
    start: int
    n: int


@dataclass(frozen=True)
class ShardTask:
    version: StoreLocation  # the version being written
    array_key: str  # the camera array it fills, inside the version (``data/rgb``)
    start: int
    stop: int
    pieces: tuple[Piece, ...]
    preprocessing: Preprocessing


def plan_shards(
    sources: list[EpisodeSource], version: StoreLocation, array_key: str, frames_per_shard: int, pre: Preprocessing
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
        ShardTask(version, array_key, k * frames_per_shard, min((k + 1) * frames_per_shard, cursor), tuple(group), pre)
        for k, group in sorted(tasks.items())
    ]


def _read(piece: Piece, pre: Preprocessing) -> np.ndarray:
    src, a, b = piece.source, piece.source_start, piece.source_start + piece.n
    if src.frames is None:
        assert src.stored is not None
        return np.asarray(zarr.open_array(store=src.stored.zarr_store(), mode="r")[src.offset + a : src.offset + b])
    frames = src.frames.read(a, b)
    return resize_frames(frames.pixels, pre, frames.color_order)


@dataclass
class ShardResult:
    """What a shard task returns: small, whatever the shard held."""

    frames: int
    moments: dict[int, ImageMoments]  # per episode
    digests: dict[str, str] = field(default_factory=dict)  # the shard object's sha256, by key inside the version


def write_shard(task: ShardTask) -> ShardResult:
    """Fill one shard in one write; the frames written, their moments per episode, and the object's sha256."""
    array = zarr.open_array(store=task.version.zarr_store(writable=True), path=task.array_key, mode="r+")
    block = np.empty((task.stop - task.start, *array.shape[1:]), np.uint8)
    moments: dict[int, ImageMoments] = {}
    for piece in task.pieces:
        frames = _read(piece, task.preprocessing)
        block[piece.start - task.start : piece.start - task.start + piece.n] = frames
        moments.setdefault(piece.source.episode, ImageMoments()).add(frames)
    array[task.start : task.stop] = block
    shard = (task.start // array.shards[0], *(0,) * (array.ndim - 1))  # type: ignore[index]
    key = f"{task.array_key}/{array.metadata.encode_chunk_key(shard)}"
    written = task.version.read(key)  # None: every frame was the fill value (black), so zarr wrote no object
    return ShardResult(task.stop - task.start, moments,
                       {} if written is None else {key: hashlib.sha256(written).hexdigest()})


def fill_frames(
    tasks: list[ShardTask], workers: int, scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[int, ImageMoments], dict[str, str]]:
    """Write every shard; ``progress(frames, episodes)`` after each, with the episodes it completed. The image
    moments per episode, and the sha256 of each shard object by key."""
    remaining: dict[int, int] = {}
    for task in tasks:
        for piece in task.pieces:
            remaining[piece.source.episode] = remaining.get(piece.source.episode, 0) + piece.n
    moments: dict[int, ImageMoments] = {}
    digests: dict[str, str] = {}
    workers = min(workers, len(tasks))  # one shard (a short episode added) runs here: spawning costs ~1 s a process
    with closing(run_as_completed(write_shard, tasks, workers, scheduler)) as results:  # closed (workers waited for)
        _collect(results, remaining, moments, digests, progress)  # before any exception leaves, Ctrl-C included
    return moments, digests


def _collect(results: Iterator[tuple[ShardTask, ShardResult]], remaining: dict[int, int],
             moments: dict[int, ImageMoments], digests: dict[str, str],
             progress: Callable[[int, int], None] | None) -> None:
    for task, result in results:
        finished = 0
        for piece in task.pieces:
            remaining[piece.source.episode] -= piece.n
            finished += remaining[piece.source.episode] == 0
        for episode, m in result.moments.items():
            moments.setdefault(episode, ImageMoments()).merge(m)
        digests |= result.digests
        if progress:
            progress(result.frames, finished)
