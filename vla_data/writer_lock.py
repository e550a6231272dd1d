"""One writer per store: an OS file lock (``filelock``, flock on Linux) held for a whole build.

The lock file ``.NAME.lock`` lies beside the store (the store folder itself is replaced when a build
publishes). The OS releases the lock when the holder exits, however it exits, so a killed build never
leaves a store locked. While held, the lock file names its holder (``schemas.store.StoreWriter``), so a
second build can say whom it waits for. The lock file stays after release (deleting a lock file that
others may be waiting on would let two writers in).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from schemas.store import StoreWriter
from vla_data.refusal import Fix, Refusal


class StoreBusy(Refusal):
    """Another build holds the store's writer lock (and waiting was not allowed)."""


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def _holder(path: Path) -> str:
    try:
        return StoreWriter.model_validate_json(path.read_text()).describe()
    except (OSError, ValueError):
        return "another vla-data build"


@contextmanager
def writer_lock(out: Path, wait: bool, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``out``'s writer lock for the block. Busy: raise ``StoreBusy`` (``wait`` False), or call
    ``on_wait`` with a message naming the holder and wait for it."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _holder(path)
        if not wait:
            raise StoreBusy(f"{out} is being written by {holder}; run again when it is done",
                            Fix({"wait": True}, "to wait for it")) from None
        if on_wait is not None:
            on_wait(f"waiting for {holder} to finish writing {out} ...")
        lock.acquire()
    try:
        writer = StoreWriter(pid=os.getpid(), host=socket.gethostname(), command=" ".join(["vla-data", *sys.argv[1:]]),
                             started=datetime.now(UTC).isoformat(timespec="seconds"))
        path.write_text(writer.model_dump_json() + "\n")
        yield
    finally:
        lock.release()
