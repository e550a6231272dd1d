"""Reading recorder HDF5 episodes without trusting them.

Files are opened read-only with file locking off (the recorder may still hold them), links are listed
without being followed, and external or virtual storage is reported, never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from schemas import ArrayHeader, ColorOrder, RecorderSettings, SourceKind
from vla_data.sources.content_hash import fingerprint
from vla_data.sources.episode import Frames, SourceEpisode

EPISODE_SUFFIXES = (".h5", ".hdf5")
# Actions are small (T x 3); anything far larger is a malformed file, and is not read into memory.
MAX_ACTION_BYTES = 64 * 2**20


@contextmanager
def open_episode(path: Path) -> Iterator[h5py.File]:
    """Open an episode read-only, without taking the HDF5 file lock."""
    with h5py.File(path, "r", locking=False) as f:
        yield f


@dataclass
class FileLayout:
    """Every dataset in a file, and what in it points outside the file."""

    datasets: dict[str, h5py.Dataset] = field(default_factory=dict)
    external_links: list[str] = field(default_factory=list)
    external_storage: list[str] = field(default_factory=list)
    virtual_datasets: list[str] = field(default_factory=list)

    def is_local(self, key: str) -> bool:
        return key in self.datasets and key not in self.external_storage and key not in self.virtual_datasets


def file_layout(f: h5py.File) -> FileLayout:
    """List links without following external or soft ones; classify every dataset's storage."""
    layout = FileLayout()
    names: list[str] = []
    f.visit_links(names.append)
    for name in names:
        link = f.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            layout.external_links.append(name)
            continue
        if not isinstance(link, h5py.HardLink):
            continue  # soft links name something listed under its own hard link
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset):
            layout.datasets[name] = obj
            if obj.is_virtual:
                layout.virtual_datasets.append(name)
            elif obj.external:
                layout.external_storage.append(name)
    return layout


def header(ds: h5py.Dataset, key: str) -> ArrayHeader:
    return ArrayHeader(key=key, shape=tuple(int(n) for n in ds.shape), dtype=str(ds.dtype))


def decode_text(value: Any) -> str | None:
    """A recorder string ((1,) S256, vlen str, or scalar) as text, NUL padding removed."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 0:
        return None
    item = arr[0]
    if isinstance(item, bytes):
        item = item.decode("utf-8", errors="replace")
    if not isinstance(item, str):
        return None
    text = item.rstrip("\x00").strip()
    return text or None


def plain_attributes(f: h5py.File) -> dict[str, Any]:
    """File attributes as JSON-friendly Python values."""
    out: dict[str, Any] = {}
    for name, value in f.attrs.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        out[name] = value
    return out


def read_actions(layout: FileLayout, key: str) -> np.ndarray | None:
    """The action rows, when they are local and of a sane size; None otherwise (the contract reports why)."""
    if not layout.is_local(key):
        return None
    ds = layout.datasets[key]
    if ds.dtype.kind not in "fiub" or ds.size * ds.dtype.itemsize > MAX_ACTION_BYTES:
        return None
    return np.asarray(ds[()])


def first_chunk_bytes(ds: h5py.Dataset) -> bytes:
    """The stored (still compressed) bytes of the first frame: cheap to read, identical in copied files."""
    if ds.shape[0] == 0:
        return b""
    if ds.chunks is not None:
        _, raw = ds.id.read_direct_chunk((0,) * ds.ndim)
        return bytes(raw)
    return np.ascontiguousarray(ds[0]).tobytes()


def iter_frame_tokens(ds: h5py.Dataset) -> Iterator[bytes]:
    """Decode every frame (so a damaged chunk raises OSError) and yield one token per frame that is equal
    for equal frames: the stored chunk bytes when the recorder chunks one frame per chunk (the collector
    does; hashing and comparing 0.2 MB of compressed bytes instead of 2.7 MB of pixels), else the pixels."""
    t = ds.shape[0]
    step = ds.chunks[0] if ds.chunks is not None else 1
    per_frame = ds.chunks is not None and ds.chunks == (1, *ds.shape[1:])
    buf = np.empty((step, *ds.shape[1:]), ds.dtype)
    for start in range(0, t, step):
        n = min(step, t - start)
        ds.read_direct(buf, np.s_[start : start + n], np.s_[0:n])
        if per_frame:
            yield bytes(ds.id.read_direct_chunk((start,) + (0,) * (ds.ndim - 1))[1])
        else:
            yield from (frame.tobytes() for frame in buf[:n])


def stored_frame_bytes(ds: h5py.Dataset) -> Iterator[bytes]:
    """The frames as stored, without decoding: every chunk's raw bytes in order (or the pixels, unchunked)."""
    if ds.chunks is None:
        for i in range(ds.shape[0]):
            yield np.ascontiguousarray(ds[i]).tobytes()
        return
    for index in np.ndindex(*(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))):
        yield bytes(ds.id.read_direct_chunk(tuple(i * c for i, c in zip(index, ds.chunks, strict=True)))[1])


@dataclass(frozen=True)
class Hdf5Frames:
    """One camera's frames in a recorder file: its dataset, in the camera's colour order."""

    path: Path
    key: str
    color_order: ColorOrder

    def read(self, start: int, stop: int) -> Frames:
        with open_episode(self.path) as f:
            return Frames(np.asarray(f[self.key][start:stop]), self.color_order)


class Hdf5Format:
    """Recorder HDF5 episode files: one file, one episode."""

    kind = SourceKind.hdf5

    def claims(self, path: Path) -> bool:
        return path.suffix.lower() in EPISODE_SUFFIXES and not path.is_dir()

    def source_of(self, ref: str) -> Path | None:
        path = Path(ref)
        return path  # the fallback format: any other file given is checked as an HDF5 episode (or "not HDF5")

    def read(self, source: Path, settings: RecorderSettings, identify: bool) -> list[SourceEpisode]:
        """The file's episode: its actions and, with ``identify``, the content hash over every stored frame byte
        (not decoded: the recorder's compressed chunks, so it is cheap and equal for copies)."""
        with open_episode(source) as f:
            actions = np.asarray(f[settings.actions_key][()], np.float32)
            digest = fingerprint(actions, [(header(f[c.key], c.key), stored_frame_bytes(f[c.key]))
                                           for c in settings.cameras]) if identify else None
        cameras = {c.name: Hdf5Frames(source, c.key, c.color_order) for c in settings.cameras}
        return [SourceEpisode(str(source), SourceKind.hdf5, actions, cameras, digest)]  # type: ignore[arg-type]


HDF5 = Hdf5Format()
