"""One writer per store, held for a whole build (and by `vla-data gc`).

A local store: an OS file lock (``filelock``, flock on Linux) on ``.NAME.lock`` beside the store folder. The OS
releases it when the holder exits, however it exits, so a killed build never leaves a store locked. The lock
file stays after release (deleting a lock file that others may be waiting on would let two writers in).

A store on object storage has no such lock, so the writer holds a lease: the object ``writer.json`` inside the
store, created only where none is (a conditional PUT) and deleted when the build ends. A build killed there
leaves its lease behind. A later build on the same machine proves it dead (its process is gone) and takes it
over; from another machine nothing can prove that, so the build refuses, naming the holder, and
`vla-data gc STORE --break-lease` (the user's word that the holder is gone) releases it.

Either way the holder is named (``schemas.store.StoreWriter``), so a second build can say whom it waits for.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from schemas.store import StoreWriter
from vla_data.store.location import StoreLocation
from vla_data.common.invocation import command
from vla_data.store.layout import LEASE
from vla_data.common.refusal import Fix, Refusal

LEASE_POLL_S = 2.0  # how often a waiting build looks at another build's lease


class StoreBusy(Refusal):
    """Another build holds the store's writer lock (and waiting was not allowed)."""


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def _writer(raw: bytes | None) -> StoreWriter | None:
    """The holder a lock file or lease names (None: none, or one that does not parse)."""
    try:
        return None if raw is None else StoreWriter.model_validate_json(raw)
    except ValueError:
        return None


def _holder(path: Path) -> str:
    try:
        writer = _writer(path.read_bytes())
    except OSError:
        writer = None
    return writer.describe() if writer is not None else "another vla-data build"


def _me() -> StoreWriter:
    return StoreWriter(pid=os.getpid(), host=socket.gethostname(), command=command(),
                       started=datetime.now(UTC).isoformat(timespec="seconds"))


@contextmanager
def writer_lock(store: StoreLocation | Path, wait: bool, on_wait: Callable[[Refusal], None] | None = None) -> Iterator[None]:
    """Hold the store's writer lock (or lease) for the block. Busy: raise ``StoreBusy`` (``wait`` False), or
    call ``on_wait`` with a notice naming the holder (a ``Refusal``: its fixes say how to stop waiting) and wait
    for it."""
    store = StoreLocation.of(store)
    manager = _file_lock(store.path, wait, on_wait) if store.path is not None else _lease(store, wait, on_wait)
    with manager:
        yield


@contextmanager
def _file_lock(out: Path, wait: bool, on_wait: Callable[[Refusal], None] | None) -> Iterator[None]:
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
            on_wait(Refusal(f"waiting for {holder} to finish writing {out} ..."))
        lock.acquire()
    try:
        path.write_text(_me().model_dump_json() + "\n")
        yield
    finally:
        try:
            path.write_text("")  # the file names its holder only while held (``active_writer``)
        finally:
            lock.release()


def active_writer(store: StoreLocation) -> StoreWriter | None:
    """The build writing ``store`` now, as far as a reader can tell without taking the lock: the holder the lock
    file (local) or the lease (object storage) names, unless that process provably no longer runs."""
    if store.path is None:
        holder = lease_holder(store)
    else:
        try:
            holder = _writer(lock_path(store.path).read_bytes())
        except OSError:
            holder = None
    return None if holder is None or _gone(holder) else holder


def _break_lease(store: StoreLocation, holder: str) -> Fix:
    """How to release the lease of a build that no longer runs (killed on another machine, say)."""
    return Fix({"break_lease": True}, f"to release its lease if {holder} no longer runs (e.g. it was killed on "
               "another machine)", command=f"gc {store}")


def lease_holder(store: StoreLocation) -> StoreWriter | None:
    """Who holds the lease of a store on object storage (None: nobody, or a lease that does not parse)."""
    return _writer(store.read(LEASE))


def _gone(holder: StoreWriter) -> bool:
    """True only when it is provable that the holder no longer runs: a process of this machine that has exited
    (or whose pid another, later process took)."""
    if holder.host != socket.gethostname():
        return False
    try:
        started = datetime.fromisoformat(holder.started).timestamp()
        return psutil.Process(holder.pid).create_time() > started + 1
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, ValueError):
        return False


@contextmanager
def _lease(store: StoreLocation, wait: bool, on_wait: Callable[[Refusal], None] | None) -> Iterator[None]:
    me = _me()
    said = False
    while not store.create(LEASE, (me.model_dump_json() + "\n").encode()):
        holder = lease_holder(store)
        if holder is not None and _gone(holder):
            if lease_holder(store) == holder:  # still the dead build's: take it over
                store.delete(LEASE)
            continue
        described = holder.describe() if holder is not None else "another vla-data build"
        if not wait:
            raise StoreBusy(f"{store} is being written by {described}; run again when it is done",
                            Fix({"wait": True}, "to wait for it"), _break_lease(store, "that build"))
        if on_wait is not None and not said:
            on_wait(Refusal(f"waiting for {described} to finish writing {store} ...", _break_lease(store, "it")))
            said = True
        time.sleep(LEASE_POLL_S)
    if lease_holder(store) != me:  # a filesystem whose exclusive create is not atomic let another build in
        raise StoreBusy(f"{store} is being written by another build that started at the same moment; run again")
    try:
        yield
    finally:
        if lease_holder(store) == me:
            store.delete(LEASE)
