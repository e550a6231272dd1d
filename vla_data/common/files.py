"""Writing files so that an interrupted job never leaves a half-written one behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o077)
    os.umask(current)
    return current


def open_permissions(path: Path) -> Path:
    """Give ``path`` the permissions a plain ``open()`` would have (0666 less the umask): ``mkstemp`` and
    safetensors create files only their owner can read."""
    os.chmod(path, 0o666 & ~umask())
    return path


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """An empty temporary file beside ``path``, with the permissions a plain ``open()`` would give; removed
    after the block unless it was renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = open_permissions(Path(name))
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def is_temporary_of(name: str, target: str) -> bool:
    """``name`` is one of the temporary files this module writes beside a file named ``target``."""
    return name.startswith(f".{target}.") and name.endswith(".tmp")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any means); if the block succeeds it is flushed to
    the disk and renamed onto ``path``, so a reader, or the file after a crash, is the old bytes or the new,
    never a part. The file gets the permissions a plain ``open()`` would give it. Every local file vla-data
    writes as a result goes through here (object storage has its own whole-object PUT)."""
    with _temporary(path) as tmp:
        yield tmp
        open_permissions(tmp)  # again: a writer may have made the file anew (safetensors does, 0600)
        _fsync(tmp)
        os.replace(tmp, path)
    _fsync(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def create_bytes_atomic(path: Path, data: bytes) -> bool:
    """Write ``path`` whole only where nothing is; False (nothing written) when something is there already.
    The complete, flushed bytes appear under the name at once (a hard link of the temporary file: exclusive
    as ``O_EXCL``); on a filesystem without hard links, an ``O_EXCL`` file written in place."""
    with _temporary(path) as tmp:
        tmp.write_bytes(data)
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE and network filesystems)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    _fsync(path.parent)
    return True
