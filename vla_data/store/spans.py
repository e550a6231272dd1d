"""Where a version's frames lie, and reading them with each shard verified the first time it is read.

A format-3 version holds no frames: each episode's frames and actions lie in a segment (``segments/<id>``,
``vla_data.store.layout``), at the frame its episode table names. A version of formats 1 and 2 holds its own
arrays: there the version is the one "segment" of every episode. ``ArraySpan`` is one episode's frames of
one array; ``ShardVerifier`` checks a shard object's sha256 against the one its segment (or version) recorded,
once per shard per process, so a flipped bit is a ``StoreError`` naming the array, the frames and the
episodes rather than wrong samples (or a decoder's traceback); ``JoinedArray`` reads a camera across a
version's episodes in the version's frame order (``view``, ``inspect-sample``, the store plot).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import zarr

from vla_data.common.refusal import Fix
from vla_data.store.errors import StoreError
from vla_data.store.location import StoreLocation


@dataclass(frozen=True)
class ArraySpan:
    """Frames [start, stop) of the array ``name`` (``data/rgb``) of the segment or version at ``root``."""

    root: StoreLocation
    name: str
    start: int
    stop: int

    @property
    def n(self) -> int:
        return self.stop - self.start


@dataclass
class ShardVerifier:
    """The sha256 of every object of the segments (or versions) a reader may read, by root then key; checks an
    object the first time this process reads it. Pickles with its checksums and without what it verified (a
    new process verifies again)."""

    checksums: Mapping[str, Mapping[str, str]]  # str(root) -> key inside root -> sha256
    store: str = ""  # for messages: the store, as the user named it
    _verified: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _pid: int = field(default_factory=os.getpid, repr=False)

    def __getstate__(self) -> dict:
        return {"checksums": self.checksums, "store": self.store}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def check(self, span: ArraySpan, array: zarr.Array, episodes: str) -> None:
        """Every shard (or chunk) of ``array`` that frames [span.start, span.stop) touch matches its recorded
        sha256; else a ``StoreError`` naming the object, the frames and ``episodes``."""
        if self._pid != os.getpid():
            self._verified, self._pid = set(), os.getpid()
        root = str(span.root)
        recorded = self.checksums.get(root)
        if recorded is None or span.n <= 0:
            return
        per = (array.shards or array.chunks)[0]
        for k in range(span.start // per, (span.stop - 1) // per + 1):
            key = f"{span.name}/{array.metadata.encode_chunk_key((k, *(0,) * (array.ndim - 1)))}"
            if (root, key) in self._verified:
                continue
            data = span.root.read(key)
            want = recorded.get(key)
            if data is None and want is None:  # every frame the fill value: zarr wrote no object
                self._verified.add((root, key))
                continue
            if data is None or want is None or hashlib.sha256(data).hexdigest() != want:
                why = "missing" if data is None else "not in its checksums" if want is None else "checksum mismatch"
                raise damaged(self.store, f"{root}/{key}", why, k * per, min((k + 1) * per, array.shape[0]), episodes)
            self._verified.add((root, key))


def damaged(store: str, what: str, why: str, first: int, stop: int, episodes: str) -> StoreError:
    return StoreError(f"{store}: {what} ({why}; frames {first}..{stop - 1} of that array, episode(s) {episodes}) "
                      "is damaged: the store's data is not what was written. Rebuild the episodes from their sources "
                      "or restore an undamaged version",
                      Fix({"verify": True}, "to name every damaged object", command=f"info {store}"))


class SpanReader:
    """Reads spans of a version's arrays in one process: each array opened once, each shard verified once."""

    def __init__(self, verifier: ShardVerifier) -> None:
        self.verifier = verifier
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        return {"verifier": self.verifier}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["verifier"])  # type: ignore[misc]

    def array(self, span: ArraySpan) -> zarr.Array:
        if self._pid != os.getpid():
            self._arrays, self._pid = {}, os.getpid()
        key = (str(span.root), span.name)
        if key not in self._arrays:
            try:
                self._arrays[key] = zarr.open_array(store=span.root.zarr_store(), path=span.name, mode="r")
            except (FileNotFoundError, KeyError, ValueError) as exc:
                raise StoreError(f"{span.root}: the manifest lists feature(s) the store has no array for: "
                                 f"{span.name.rsplit('/', 1)[-1]} ({span.name}); the store is damaged or was changed "
                                 "by hand: rebuild it from its sources", Fix({"overwrite": True}, "to build-splits")
                                 ) from exc
        return self._arrays[key]

    def read(self, span: ArraySpan, episodes: str) -> np.ndarray:
        """The span's frames; a damaged shard (checksum, or bytes that do not decode) is a ``StoreError``."""
        array = self.array(span)
        self.verifier.check(span, array, episodes)
        try:
            return np.asarray(array[span.start : span.stop])
        except Exception as exc:  # the codecs raise many kinds for damaged bytes (zstd, truncation)
            raise damaged(self.verifier.store, f"{span.root}/{span.name}", f"{type(exc).__name__}: {str(exc)[:120]}",
                          span.start, span.stop, episodes) from exc


class JoinedArray:
    """One array of a version read in the version's frame order across its episodes' spans: ``[a:b]``, ``[i]``,
    ``.oindex[[i, j, ...]]``, ``shape``; every read verified (``SpanReader``)."""

    def __init__(self, spans: Sequence[ArraySpan], reader: SpanReader, trailing: tuple[int, ...], dtype: str) -> None:
        self.spans = list(spans)
        self.reader = reader
        self.starts = np.concatenate([[0], np.cumsum([s.n for s in self.spans])]).astype(np.int64)
        self.shape = (int(self.starts[-1]), *trailing)
        self.dtype = np.dtype(dtype)
        self.oindex = _Rows(self)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, a: int, b: int) -> np.ndarray:
        out = np.empty((max(0, b - a), *self.shape[1:]), self.dtype)
        first = int(np.searchsorted(self.starts, a, side="right")) - 1
        for e in range(max(first, 0), len(self.spans)):
            lo, hi = int(self.starts[e]), int(self.starts[e + 1])
            if lo >= b:
                break
            s, t = max(a, lo), min(b, hi)
            if s < t:
                span = self.spans[e]
                part = ArraySpan(span.root, span.name, span.start + s - lo, span.start + t - lo)
                out[s - a : t - a] = self.reader.read(part, str(e))
        return out

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, slice):
            a, b, step = index.indices(self.shape[0])
            return self.rows(a, b)[::step] if step != 1 else self.rows(a, b)
        i = int(index) + (self.shape[0] if int(index) < 0 else 0)
        if not 0 <= i < self.shape[0]:
            raise IndexError(f"frame {index} of {self.shape[0]}")
        return self.rows(i, i + 1)[0]

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        whole = self.rows(0, self.shape[0])
        return whole if dtype is None else whole.astype(dtype)


@dataclass
class _Rows:
    joined: JoinedArray

    def __getitem__(self, rows: Sequence[int]) -> np.ndarray:
        return np.stack([self.joined[int(i)] for i in rows]) if len(rows) else np.empty((0, *self.joined.shape[1:]),
                                                                                        self.joined.dtype)
