"""The command line this process runs, as records name it (a version's history, a writer's lease): the CLI sets
it from the arguments it was given (also when called in-process, as tests do); otherwise ``sys.argv``."""

from __future__ import annotations

import shlex
import sys
from contextvars import ContextVar

_COMMAND: ContextVar[str | None] = ContextVar("vla_data_command", default=None)


def set_command(args: list[str]) -> None:
    _COMMAND.set(shlex.join(["vla-data", *args]))


def command() -> str:
    return _COMMAND.get() or shlex.join(["vla-data", *sys.argv[1:]])
