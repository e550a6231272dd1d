"""How a command ends when something stops it: one line on stderr and an exit code, never a traceback.

``ENDINGS`` is the one table from exception types to exit code and wording (exit 0 success, 1 the data or the
setup is wrong, 2 usage errors, which stay click's, 130 Ctrl-C). Every command runs inside ``reported()``: the
group enters it around each command; a command whose situation adds to the words (what a killed build left, a
port that may be in use) enters it again around that work, saying what it adds.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import click

from pipelines.cli.flags import worded
from vla_data.common.refusal import Refusal

INTERRUPTED = 130  # the shell's code for a job ended by Ctrl-C
OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space, or write to another disk",
    errno.EROFS: "the file system is read-only: write to a folder on a writable disk",
    errno.EACCES: "no permission: write to a folder you own",
    errno.EPERM: "not permitted: write to a folder you own",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def fail(problem: str | Exception, code: int = 1) -> NoReturn:
    """A data or setup error: said in red on stderr, exit 1 (usage errors stay click's, exit 2). A refusal's
    fixes are worded as the flags that give them."""
    click.echo(click.style(f"error: {worded(problem)}", fg="red"), err=True)
    sys.exit(code)


def os_error(exc: OSError) -> str:
    """An OS error as one line: the file, what the OS said, and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    hint = OS_HINTS.get(exc.errno or 0)
    return f"{where}{exc.strerror or exc}" + (f" ({hint})" if hint else "")


@dataclass(frozen=True)
class Said:
    """What a command's situation adds to the words of an ending."""

    after_os_error: str = ""  # appended to an OS error's line
    interrupted: str = "interrupted"  # the line for Ctrl-C
    exists: str | None = None  # after a FileExistsError's message: what to do instead


@dataclass(frozen=True)
class Ending:
    """How exceptions of ``types`` end a command. A type given as "module:Name" is looked up only once its module
    is imported (an exception of a module never imported cannot have been raised): the CLI loads torch, the
    client and the model code only in the commands that use them."""

    types: tuple[type[BaseException] | str, ...]
    code: int
    words: Callable[[Any, Said], str | None]  # None: not here, the next ending that matches says it
    style: Literal["error", "plain", "click"] = "error"  # red `error: ...`; the line as it is; click's `Error: ...`

    def matches(self, exc: BaseException) -> bool:
        classes = []
        for kind in self.types:
            if isinstance(kind, str):
                module, _, name = kind.partition(":")
                if module in sys.modules:
                    classes.append(getattr(sys.modules[module], name))
            else:
                classes.append(kind)
        return isinstance(exc, tuple(classes))


def _build_refused(refused: Any, said: Said) -> str:
    from pipelines.validate import render_report

    click.echo(render_report(refused.report), err=True)  # the files and their errors, then why nothing was written
    return f"build refused, nothing written: {refused}; fix them or pass --skip-invalid"


# first match wins
ENDINGS: tuple[Ending, ...] = (
    Ending((KeyboardInterrupt,), INTERRUPTED, lambda exc, said: said.interrupted, style="plain"),
    Ending(("vla_data.build.job:BuildRefused",), 1, _build_refused),
    # refusals (a store, a split, a checkpoint, a backbone, a config, a busy store), bad values, a server's answer
    Ending((Refusal, ValueError, "vla_client.client:ServerError"), 1, lambda exc, said: worded(exc)),
    Ending((FileExistsError,), 1, lambda exc, said: said.exists and f"{exc}: {said.exists}", style="click"),
    # a full disk, a read-only folder, a file that is not there, a server that cannot be reached
    Ending((OSError,), 1, lambda exc, said: os_error(exc) + said.after_os_error),
)


def end(exc: BaseException, said: Said = Said()) -> None:
    """End the command as ``ENDINGS`` says for ``exc``; returns only where no ending matches (a bug: its traceback
    is wanted)."""
    for ending in ENDINGS:
        words = ending.words(exc, said) if ending.matches(exc) else None
        if words is None:
            continue
        if ending.style == "error":
            fail(words, ending.code)
        if ending.style == "click":
            raise click.ClickException(words) from None
        click.echo(words, err=True)
        sys.exit(ending.code)


@contextmanager
def reported(**said: str) -> Iterator[None]:
    """``with reported(after_os_error=..., interrupted=..., exists=...):`` ends the command as ``ENDINGS`` says
    for any exception the block raises, with what the command adds to the words (``Said``)."""
    try:
        yield
    except BaseException as exc:  # Ctrl-C too; what no ending matches goes on as it was
        end(exc, Said(**said))
        raise
