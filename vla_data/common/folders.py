"""Publishing a result that is a whole folder (an exported policy, a LeRobot dataset): it is written beside its place
under a temporary name that carries the writer's pid, and renamed into place once complete, so a reader finds the
whole folder or none. A temporary folder whose writer is dead (kill -9, a power cut) is removed by the next writer
of the same folder; a live writer's is left alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vla_data.common.files import open_permissions
from vla_data.common.refusal import Refusal


class FolderRefusal(Refusal):
    """The folder cannot be published there: taken by something else, or no parent folder."""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


Replaceable = Callable[[Path], bool]  # whether an existing folder is one this job wrote (and may replace)


def check_folder(out: Path, job: str, replaceable: Replaceable | None = None) -> bool:
    """Refuse ``out`` unless it does not exist, is an empty folder, or (``replaceable``) is one this job wrote;
    whether it is replaced. A job calls it before its work, so a taken folder costs the user nothing."""
    if not out.parent.is_dir():
        raise FolderRefusal(f"{out.parent} does not exist: create it first")
    if not (out.exists() or out.is_symlink()) or _is_empty_folder(out):
        return False
    if replaceable is not None and out.is_dir() and not out.is_symlink() and replaceable(out):
        return True
    raise FolderRefusal(f"{out} exists already and is neither empty nor one `{job}` wrote: give a new folder (or "
                        "remove that one first)")


@contextmanager
def publishing(out: Path, job: str, announce: Callable[[str], None], replaceable: Replaceable | None = None
               ) -> Iterator[Path]:
    """A new temporary folder beside ``out`` to write into; when the block ends without an error it becomes ``out``
    at once. ``out`` is checked first (``check_folder``): a folder this job wrote is replaced whole. On an error
    (Ctrl-C included) the temporary folder is removed and ``out`` is as it was."""
    replace = check_folder(out, job, replaceable)
    prefix = f".{out.name}.{job}-"
    for left in out.parent.glob(f"{prefix}*.tmp"):
        pid = left.name.removeprefix(prefix).removesuffix(".tmp")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
            announce(f"removed {left.name}: a `{job}` killed half-way left it")
    tmp = out.parent / f"{prefix}{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # ours: a name only this process uses
    tmp.mkdir()
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                open_permissions(path)  # 0644 under umask 022, as a plain open() (some writers make 0600 files)
        _publish(tmp, out, replace, job)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, out: Path, replace: bool, job: str) -> None:
    old = out.parent / f".{out.name}.{job}-{os.getpid()}.old"
    try:
        if replace:
            os.rename(out, old)  # the previous result, removed once the new one is in place
        elif _is_empty_folder(out):
            out.rmdir()
        os.rename(tmp, out)  # the whole folder appears at once
    except OSError as exc:  # a folder made there meanwhile (another writer of the same folder)
        if old.exists() and not out.exists():
            os.rename(old, out)
        raise FolderRefusal(f"{out} appeared or changed while this `{job}` ran (another one writing it?); nothing "
                            f"published ({exc.strerror})") from None
    shutil.rmtree(old, ignore_errors=True)
