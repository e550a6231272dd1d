"""Decoded frames of a split's episodes, per process: all held in memory when they fit a budget, otherwise
an LRU cache of whole episodes. The store is opened lazily in the process that reads (DataLoader workers
included); nothing opened travels through pickling."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_data.store.spans import ArraySpan, SpanReader

MEMORY_FRACTION = 0.25  # default budget: this share of the RAM available when the dataset is made
SPAN_FRAMES = 256  # the in-memory fill reads neighbouring episodes together, up to this many frames a read
SPAN_GAP = 32  # and across at most this many frames of other episodes (other splits) between them


def available_memory() -> int:
    """Bytes of RAM available now (Linux; total RAM elsewhere, where 'available' is not reported)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_budget() -> int:
    return int(MEMORY_FRACTION * available_memory())


class EpisodeFrames:
    """``episode(i)`` -> (n, S, S, 3) uint8 frames of one camera of the i-th of ``spans`` (where each episode's
    frames lie: ``DatasetStore.camera_spans``), read through ``reader`` (each shard verified the first time)."""

    def __init__(self, spans: list[ArraySpan], reader: SpanReader, in_memory: bool, cache_episodes: int,
                 episode_ids: list[int] | None = None) -> None:
        self.spans = spans
        self.reader = reader
        self.episode_ids = episode_ids if episode_ids is not None else list(range(len(spans)))  # for messages
        self.in_memory = in_memory
        self.cache_episodes = max(1, cache_episodes)
        self.decoded_episodes = 0  # how many episode reads this process made (the tests and benchmark read it)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._all: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_all", "_offsets", "_lru"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def _read(self, i: int) -> np.ndarray:
        """Decode the i-th episode."""
        self.decoded_episodes += 1
        return self._read_span(self.spans[i], [i])

    def _read_span(self, span: ArraySpan, episodes: list[int]) -> np.ndarray:
        """One read; a damaged shard is a ``StoreError`` naming the array, frames and the ``episodes`` (positions
        in ``spans``) the read was for."""
        return self.reader.read(span, ", ".join(str(self.episode_ids[i]) for i in episodes))

    def _spans(self) -> list[tuple[ArraySpan, list[int]]]:
        """The reads that decode every episode: episodes close together in one array (other frames between them
        at most ``SPAN_GAP``) read as one span of at most ``SPAN_FRAMES`` frames, since every read of an array
        costs a round trip per shard index on object storage; (span, episode positions)."""
        reads: list[tuple[ArraySpan, list[int]]] = []
        for i in sorted(range(len(self.spans)), key=lambda i: (str(self.spans[i].root), self.spans[i].start)):
            s = self.spans[i]
            if reads:
                last, members = reads[-1]
                if (last.root == s.root and last.name == s.name and s.start - last.stop <= SPAN_GAP
                        and s.stop - last.start <= SPAN_FRAMES):
                    reads[-1] = (ArraySpan(s.root, s.name, last.start, max(s.stop, last.stop)), [*members, i])
                    continue
            reads.append((s, [i]))
        return reads

    def load_all(self, progress: str | None = None) -> None:
        """Decode every episode into one array (the in-memory path), a few neighbouring episodes per read; a
        no-op when already loaded here. ``progress``: the label of a bar over the episodes (on a terminal),
        e.g. while a store on object storage is read for the first time."""
        if self._pid != os.getpid():
            self._pid = os.getpid()  # decoded frames inherited through a fork are kept
        if self._all is not None:
            return
        sizes = [s.n for s in self.spans]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        frames: np.ndarray | None = None
        with tqdm(total=len(self.spans), desc=progress, unit="episode", disable=None if progress else True,
                  leave=False) as bar:
            for read, episodes in self._spans():
                span = self._read_span(read, episodes)
                if frames is None:
                    frames = np.empty((int(self._offsets[-1]), *span.shape[1:]), np.uint8)
                for i in episodes:
                    a, b = self.spans[i].start, self.spans[i].stop
                    frames[self._offsets[i] : self._offsets[i + 1]] = span[a - read.start : b - read.start]
                self.decoded_episodes += len(episodes)
                bar.update(len(episodes))
        self._all = frames if frames is not None else np.zeros((0,), np.uint8)

    def episode(self, i: int) -> np.ndarray:
        if self.in_memory:
            self.load_all()
            assert self._all is not None and self._offsets is not None
            return self._all[self._offsets[i] : self._offsets[i + 1]]
        if i in self._lru:
            self._lru.move_to_end(i)
            return self._lru[i]
        frames = self._read(i)
        self._lru[i] = frames
        while len(self._lru) > self.cache_episodes:
            self._lru.popitem(last=False)
        return frames
