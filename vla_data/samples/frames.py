"""Decoded frames of a split's episodes, per process: all held in memory when they fit a budget, otherwise
an LRU cache of whole episodes. The store is opened lazily in the process that reads (DataLoader workers
included); nothing opened travels through pickling."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from vla_data.store.layout import split_array_location
from vla_data.store.location import StoreLocation
from vla_data.common.refusal import Fix
from vla_data.store.reader import StoreError

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
    """``episode(i)`` -> (n, S, S, 3) uint8 frames of one camera (the array at ``array``) of the i-th of
    ``ranges`` (store frame [start, stop))."""

    def __init__(self, array: StoreLocation, ranges: list[tuple[int, int]], in_memory: bool, cache_episodes: int,
                 episode_ids: list[int] | None = None) -> None:
        self.array = array
        self.ranges = ranges
        self.episode_ids = episode_ids if episode_ids is not None else list(range(len(ranges)))  # for messages
        self.in_memory = in_memory
        self.cache_episodes = max(1, cache_episodes)
        self.decoded_episodes = 0  # how many episode reads this process made (the tests and benchmark read it)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._rgb: zarr.Array | None = None
        self._all: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_rgb", "_all", "_offsets", "_lru"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def _array(self) -> zarr.Array:
        """The camera array, opened in this process (decoded frames inherited through a fork are kept)."""
        if self._rgb is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._rgb = zarr.open_array(store=self.array.zarr_store(), mode="r")
        return self._rgb

    def _read(self, i: int) -> np.ndarray:
        """Decode the i-th episode."""
        self.decoded_episodes += 1
        return self._read_span(*self.ranges[i], [i])

    def _read_span(self, start: int, stop: int, episodes: list[int]) -> np.ndarray:
        """Store frames [start, stop) in one read; a damaged shard is a ``StoreError`` naming the array, frames and
        the ``episodes`` (positions in ``ranges``) the read was for."""
        try:
            return np.asarray(self._array()[start:stop])
        except Exception as exc:  # the codecs raise many kinds for damaged bytes (checksum, zstd, truncation)
            store, array = split_array_location(str(self.array))  # the store, not its current version
            ids = ", ".join(str(self.episode_ids[i]) for i in episodes)
            raise StoreError(
                f"{store}: {array} frames {start}..{stop - 1} (episode{'s' if len(episodes) > 1 else ''} {ids}) "
                f"cannot be decoded ({type(exc).__name__}: {str(exc)[:120]}); the store is damaged: rebuild it from "
                "its sources", Fix({"verify": True}, "to name every damaged object", command=f"info {store}")
            ) from exc

    def _spans(self) -> list[tuple[int, int, list[int]]]:
        """The reads that decode every episode: episodes close together in the store (other frames between them
        at most ``SPAN_GAP``) read as one span of at most ``SPAN_FRAMES`` frames, since every read of an array
        costs a round trip per shard index on object storage; (start, stop, episode positions)."""
        spans: list[tuple[int, int, list[int]]] = []
        for i in sorted(range(len(self.ranges)), key=lambda i: self.ranges[i]):
            a, b = self.ranges[i]
            if spans and a - spans[-1][1] <= SPAN_GAP and b - spans[-1][0] <= SPAN_FRAMES:
                spans[-1] = (spans[-1][0], max(b, spans[-1][1]), [*spans[-1][2], i])
            else:
                spans.append((a, b, [i]))
        return spans

    def load_all(self, progress: str | None = None) -> None:
        """Decode every episode into one array (the in-memory path), a few neighbouring episodes per read; a
        no-op when already loaded here. ``progress``: the label of a bar over the episodes (on a terminal),
        e.g. while a store on object storage is read for the first time."""
        self._array()
        if self._all is not None:
            return
        sizes = [b - a for a, b in self.ranges]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        first = self._array()
        frames = np.empty((int(self._offsets[-1]), *first.shape[1:]), np.uint8)
        with tqdm(total=len(self.ranges), desc=progress, unit="episode", disable=None if progress else True,
                  leave=False) as bar:
            for start, stop, episodes in self._spans():
                span = self._read_span(start, stop, episodes)
                for i in episodes:
                    a, b = self.ranges[i]
                    frames[self._offsets[i] : self._offsets[i + 1]] = span[a - start : b - start]
                self.decoded_episodes += len(episodes)
                bar.update(len(episodes))
        self._all = frames

    def episode(self, i: int) -> np.ndarray:
        self._array()  # (re)opens after a fork
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
