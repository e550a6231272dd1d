"""Batches from a ``WindowDataset``: a seeded episode-aware shuffle, a collate that keeps images uint8,
and ``make_loader`` that sets up the DataLoader the trainer and the benchmark use."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from schemas.sample import SampleField
from vla_data.dataset import Sample, WindowDataset


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
        rng = np.random.default_rng([self.seed, epoch])
        if self.block_episodes is None:
            return rng.permutation(len(self.groups))
        episodes = rng.permutation(int(self.groups.max()) + 1 if len(self.groups) else 0)
        blocks = [episodes[i : i + self.block_episodes] for i in range(0, len(episodes), self.block_episodes)]
        return np.concatenate([rng.permutation(np.flatnonzero(np.isin(self.groups, b))) for b in blocks])

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        self.epoch += 1
        return iter(order.tolist())


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


def make_loader(
    dataset: WindowDataset,
    batch_size: int = 32,
    shuffle: bool = True,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    block_episodes: int | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset``: seeded episode-aware shuffle (or store order), uint8 images, pinned
    memory when CUDA is present, persistent workers. When the split's frames are held in memory they are
    decoded here, before the workers fork, so the workers share one copy. The process that builds batches
    reuses their memory (``keep_batch_memory``)."""
    keep_batch_memory()
    if dataset.frames.in_memory:
        block_episodes = None
        if workers and multiprocessing.get_start_method() == "fork":
            dataset.load_all()
    elif block_episodes is None:
        block_episodes = dataset.frames.cache_episodes
    sampler = EpisodeBlockSampler(dataset, seed, block_episodes) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=_worker_started if workers else None,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),  # its own: creating an iterator never moves the global RNG
    )
