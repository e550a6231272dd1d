"""An episode's identity: one sha256 over its frames and actions, laid out the same for every source format,
so that a copy of an episode is recognised wherever it comes from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from schemas import ArrayHeader


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
