"""Batches from a ``WindowDataset``: a seeded episode-aware shuffle, a collate that keeps images uint8,
and ``make_loader`` that sets up the DataLoader the trainer and the benchmark use.

Two batchings (``schemas.sample.Batching``): per-window batches of independent samples, and segment batches
(``SegmentSampler``): runs of consecutive anchors of one episode, each frame shipped once with the table that
rebuilds every window (``SegmentField``). Both shuffle with the same seeded episode blocks."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from schemas.sample import Batching, BatchingConfig, SampleField, SegmentField
from vla_data.samples.dataset import Sample, Segment, WindowDataset
from vla_data.samples.segments import cut_segments


# glibc's mallopt parameters: allocations below the mmap threshold come from the heap, which is given back to
# the OS only above the trim threshold.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
BATCH_MEMORY = 256 * 2**20  # a 224px batch of 32 x 8 frames is 38.5 MB per camera: keep such blocks in the heap
_batch_memory_kept = False


def keep_batch_memory() -> bool:
    """Let this process reuse the memory of the batches it frees instead of asking the OS for fresh pages for
    every batch. By default glibc serves a block over 32 MB (one camera's batch is 38.5 MB) with a fresh mmap
    and unmaps it when freed, so each batch page-faults its whole size again; keeping blocks up to
    ``BATCH_MEMORY`` in the heap made the loader 5x faster (benchmarks/loader.py). The process keeps up to its
    peak batch memory. A no-op (False) where the C library is not glibc."""
    global _batch_memory_kept
    if _batch_memory_kept:
        return True
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows): its allocator is left as it is
        return False
    _batch_memory_kept = bool(mallopt(M_MMAP_THRESHOLD, BATCH_MEMORY)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _batch_memory_kept


def _worker_started(worker_id: int) -> None:
    keep_batch_memory()  # a spawned worker starts with the allocator's defaults


class EpisodeBlockSampler(Sampler[int]):
    """A seeded shuffle that visits the episodes in random blocks of ``block_episodes``.

    The samples of one block are shuffled together, so an LRU cache of that many episodes decodes each
    episode once per epoch while a batch still mixes many episodes. ``block_episodes=None`` shuffles all
    samples at once (the in-memory case). Epoch e's order depends only on (seed, e): every process of a
    distributed run, and every worker count, sees the same order.
    """

    def __init__(self, dataset: WindowDataset, seed: int = 0, block_episodes: int | None = None) -> None:
        self.groups = np.array([dataset.sample_episode(i) for i in range(len(dataset))], np.int64)
        self.seed = seed
        self.block_episodes = block_episodes
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> np.ndarray:
        return block_order(self.groups, np.random.default_rng([self.seed, epoch]), self.block_episodes)

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        self.epoch += 1
        return iter(order.tolist())


def block_order(groups: np.ndarray, rng: np.random.Generator, block_episodes: int | None) -> np.ndarray:
    """A shuffle of items whose episodes are ``groups``: episodes in random blocks of ``block_episodes``, the
    items of one block shuffled together (None: all items at once)."""
    if block_episodes is None:
        return rng.permutation(len(groups))
    episodes = rng.permutation(int(groups.max()) + 1 if len(groups) else 0)
    blocks = [episodes[i : i + block_episodes] for i in range(0, len(episodes), block_episodes)]
    return np.concatenate([rng.permutation(np.flatnonzero(np.isin(groups, b))) for b in blocks] or [np.zeros(0, np.int64)])


class SegmentSampler(Sampler[tuple[int, ...]]):
    """Segments of ``length`` consecutive anchors (``WindowDataset.segment_groups`` cut by ``cut_segments``),
    as tuples of sample indices, shuffled like ``EpisodeBlockSampler`` shuffles samples. Each epoch every
    sample is in exactly one segment; where an episode's short segment falls changes with the epoch.
    ``shuffle=False``: the segments in store order, cut the same way every epoch (validation)."""

    def __init__(self, dataset: WindowDataset, length: int, seed: int = 0, block_episodes: int | None = None,
                 shuffle: bool = True) -> None:
        self.runs = dataset.segment_groups()
        self.episodes = np.array([dataset.sample_episode(int(g[0])) for g in self.runs], np.int64)
        self.length, self.seed, self.block_episodes, self.shuffle = length, seed, block_episodes, shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return sum(-(-len(g) // self.length) for g in self.runs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[tuple[int, ...]]:
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        segments, episodes = [], []
        for run, episode in zip(self.runs, self.episodes, strict=True):
            for a, b in cut_segments(len(run), self.length, rng):
                segments.append(tuple(run[a:b].tolist()))
                episodes.append(episode)
        if rng is None:
            return segments
        return [segments[i] for i in block_order(np.array(episodes, np.int64), rng, self.block_episodes)]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        order = self.order(self.epoch)
        self.epoch += 1
        return iter(order)


class Segments(Dataset[Segment]):
    """A ``WindowDataset`` read by segments: the key is a tuple of sample indices (``SegmentSampler``'s)."""

    def __init__(self, samples: WindowDataset) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, ...]) -> Segment:
        return self.samples.segment(key)


def collate_samples(samples: list[Sample]) -> dict[str, object]:
    """Stack a list of samples into a batch (``rgb``: camera name -> (B, W, 3, S, S)); images stay uint8 (the
    model converts them on its device)."""
    return {
        SampleField.rgb: {c: torch.stack([s["rgb"][c] for s in samples]) for c in samples[0]["rgb"]},
        SampleField.frame_mask: torch.stack([s["frame_mask"] for s in samples]),
        SampleField.actions: torch.stack([s["actions"] for s in samples]),
        SampleField.chunk_mask: torch.stack([s["chunk_mask"] for s in samples]),
        SampleField.instruction: [s["instruction"] for s in samples],
        SampleField.episode: torch.tensor([s["episode"] for s in samples]),
        SampleField.t: torch.tensor([s["t"] for s in samples]),
    }


def collate_segments(segments: list[Segment]) -> dict[str, object]:
    """Concatenate segments into one segment batch: ``rgb`` camera name -> (F, 3, S, S), the unique frames of
    every segment; ``window_frames`` (B, W) rows of them; the per-sample fields as ``collate_samples`` gives
    them (B = the anchors of all segments, segment by segment)."""
    counts = [len(s["window_frames"]) for s in segments]  # anchors per segment
    frames = [len(next(iter(s["rgb"].values()))) for s in segments]  # unique frames per segment
    offsets = np.cumsum([0, *frames[:-1]]).tolist()
    return {
        SampleField.rgb: {c: torch.cat([s["rgb"][c] for s in segments]) for c in segments[0]["rgb"]},
        SegmentField.window_frames: torch.cat([s["window_frames"] + o for s, o in zip(segments, offsets, strict=True)]),
        SegmentField.frame_instruction: [s["instruction"] for s, n in zip(segments, frames, strict=True) for _ in range(n)],
        SampleField.frame_mask: torch.cat([s["frame_mask"] for s in segments]),
        SampleField.actions: torch.cat([s["actions"] for s in segments]),
        SampleField.chunk_mask: torch.cat([s["chunk_mask"] for s in segments]),
        SampleField.instruction: [s["instruction"] for s, n in zip(segments, counts, strict=True) for _ in range(n)],
        SampleField.episode: torch.tensor([s["episode"] for s, n in zip(segments, counts, strict=True) for _ in range(n)]),
        SampleField.t: torch.cat([s["t"] for s in segments]),
    }


def make_loader(
    dataset: WindowDataset,
    batch_size: int = 32,
    shuffle: bool = True,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    block_episodes: int | None = None,
    batching: BatchingConfig = BatchingConfig(),
    progress: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset``: seeded episode-aware shuffle (or store order), uint8 images, pinned
    memory when CUDA is present, persistent workers. When the split's frames are held in memory they are
    decoded here (with a bar if ``progress``: from object storage this first fill is the long read), before the
    workers fork, so the workers share one copy. The process that builds batches
    reuses their memory (``keep_batch_memory``). ``batch_size`` counts samples in either batching; a segment
    batch is ``batch_size / batching.segment_length`` segments (fewer samples where a segment is short)."""
    keep_batch_memory()
    if dataset.frames.in_memory:
        block_episodes = None
        if not workers or multiprocessing.get_start_method() == "fork":  # spawned workers read their own copy
            dataset.load_all(progress)
    elif block_episodes is None:
        block_episodes = dataset.frames.cache_episodes
    if batching.mode == Batching.segments:
        if batch_size % batching.segment_length:
            raise ValueError(f"batch size {batch_size} is not a multiple of segment length {batching.segment_length}")
        items: Dataset = Segments(dataset)
        sampler: Sampler | None = SegmentSampler(dataset, batching.segment_length, seed, block_episodes, shuffle)
        batch_size, collate = batch_size // batching.segment_length, collate_segments
    else:
        items, collate = dataset, collate_samples
        sampler = EpisodeBlockSampler(dataset, seed, block_episodes) if shuffle else None
    return DataLoader(
        items,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=_worker_started if workers else None,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),  # its own: creating an iterator never moves the global RNG
    )
