"""An episode's identity: one sha256 over its frames and actions, laid out the same for every source format,
so that a copy of an episode is recognised wherever it comes from; and a stored source file's stamp, so that a
build recognises an unchanged one without decoding it again."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from schemas import ArrayHeader
from schemas.store import FileStamp


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


QUICK_BYTES = 1 << 16  # the head and tail a file's quick hash reads


def file_stamp(path: str | Path) -> FileStamp | None:
    """How a later build recognises a source file it stored without reading it again: its size, its mtime (ns)
    and a sha256 of its size, first and last 64 KB. None for what is not one file (a bag's episode)."""
    try:
        stat = os.stat(path)
        if not Path(path).is_file():
            return None
        with open(path, "rb") as f:
            head = f.read(QUICK_BYTES)
            f.seek(max(0, stat.st_size - QUICK_BYTES))
            tail = f.read(QUICK_BYTES)
    except OSError:
        return None
    quick = hashlib.sha256(str(stat.st_size).encode() + head + tail).hexdigest()
    return FileStamp(size=stat.st_size, mtime_ns=stat.st_mtime_ns, quick=quick)
