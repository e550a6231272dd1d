"""Reading recorder HDF5 episodes without trusting them.

Files are opened read-only with file locking off (the recorder may still hold them), links are listed
without being followed, and external or virtual storage is reported, never read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from schemas import ArrayHeader, InstructionSource, RecorderSettings, Scenario
from vla_data.sources.bags import MCAP_SUFFIX, is_bag

EPISODE_SUFFIXES = (".h5", ".hdf5")
# Actions are small (T x 3); anything far larger is a malformed file, and is not read into memory.
MAX_ACTION_BYTES = 64 * 2**20


class IndexCsvError(ValueError):
    """A dataset_index.csv that cannot be used."""


def episode_files(paths: Iterable[Path]) -> list[Path]:
    """The sources named by ``paths``: HDF5 episode files and ROS 2 bags (a folder holding metadata.yaml, or
    one .mcap file outside such a folder). Files and bags as given, other folders searched recursively (a
    bag's own folder is not searched: its storage files are the bag), sorted, unique."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir() and not is_bag(path):
            for folder, subfolders, names in os.walk(path):
                here = Path(folder)
                bags = sorted(d for d in subfolders if is_bag(here / d))
                for d in bags:
                    found[here / d] = None
                subfolders[:] = sorted(d for d in subfolders if d not in bags)
                for name in sorted(names):
                    p = here / name
                    if p.suffix.lower() in EPISODE_SUFFIXES or (p.suffix.lower() == MCAP_SUFFIX and is_bag(p)):
                        found[p] = None
        else:
            found[path] = None
    return sorted(found)


def common_root(paths: Iterable[Path]) -> str:
    """The folder that the given files and folders share."""
    return os.path.commonpath([str(p.resolve().parent if p.is_file() else p.resolve()) for p in paths])


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


class InstructionIndex:
    """Instructions from ``dataset_index.csv`` files (columns ``episode_path``, ``instruction``).

    A CSV applies to the episodes in its folder and below. ``episode_path`` may be absolute, relative to
    the CSV's folder, or a bare file name. Built once in the parent process and handed to workers.
    """

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}
        self.by_name: dict[tuple[str, str], str] = {}  # (csv folder, file name) -> instruction

    @classmethod
    def for_files(cls, files: Iterable[Path], csv_name: str) -> InstructionIndex:
        index = cls()
        seen: set[Path] = set()
        for file in files:
            for folder in file.resolve().parents:
                if folder in seen:
                    continue
                seen.add(folder)
                csv = folder / csv_name
                if csv.is_file():
                    index._load(csv)
        return index

    def _load(self, csv: Path) -> None:
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except Exception as exc:  # pandas raises many kinds for a malformed CSV
            raise IndexCsvError(f"{csv}: cannot be read as CSV ({exc})") from exc
        missing = {"episode_path", "instruction"} - set(table.columns)
        if missing:
            raise IndexCsvError(
                f"{csv}: missing column(s) {', '.join(sorted(missing))}; expected episode_path, instruction"
            )
        for episode_path, instruction in zip(table["episode_path"], table["instruction"], strict=True):
            if not instruction.strip():
                continue
            p = Path(episode_path)
            self.by_path[str((csv.parent / p).resolve())] = instruction.strip()
            self.by_name[(str(csv.parent), p.name)] = instruction.strip()

    def lookup(self, path: Path) -> str | None:
        resolved = path.resolve()
        if str(resolved) in self.by_path:
            return self.by_path[str(resolved)]
        for folder in resolved.parents:
            hit = self.by_name.get((str(folder), resolved.name))
            if hit:
                return hit
        return None


def resolve_instruction(
    own: list[tuple[str | None, InstructionSource]], path: Path, index: InstructionIndex, settings: RecorderSettings,
    also: Path | None = None,
) -> tuple[str | None, InstructionSource | None]:
    """The episode's instruction and where it came from: the source's own (``own``, in order: an HDF5 file's
    dataset; a bag's topic, then its metadata), then the CSV (a row for ``path``, else for ``also``: the bag
    of an episode BAG#k), then the settings' instruction, then the template over the target side the file
    (or bag) name gives."""
    for text, source in own:
        if text:
            return text, source
    from_csv = index.lookup(path) or (index.lookup(also) if also is not None else None)
    if from_csv:
        return from_csv, InstructionSource.csv
    if settings.instruction:
        return settings.instruction, InstructionSource.setting
    scenario = Scenario.from_file_name((also or path).name)
    if scenario is not None and scenario.target_side is not None:
        return settings.instruction_template.format(side=scenario.target_side), InstructionSource.file_name
    return None, None


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


def fingerprint(actions: np.ndarray | None, cameras: list[tuple[ArrayHeader, Iterable[bytes]]]) -> str:
    """sha256 over the first camera's frame shape and dtype, the actions and that camera's given frame bytes,
    then each further camera's shape, dtype and bytes, streamed. An episode of one camera hashes as it did
    before there were cameras, so stores built then keep recognising their episodes."""
    digest = hashlib.sha256()
    (first, first_bytes), *others = cameras
    digest.update(repr((first.shape, first.dtype)).encode())
    if actions is not None:
        digest.update(np.ascontiguousarray(actions).tobytes())
    for chunk in first_bytes:
        digest.update(chunk)
    for header, frame_bytes in others:
        digest.update(repr((header.shape, header.dtype)).encode())
        for chunk in frame_bytes:
            digest.update(chunk)
    return digest.hexdigest()


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
