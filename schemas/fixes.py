"""A fix named by setting, not by flag: the one definition that refusals (``Refusal``, here so that settings
validators raise them too; ``vla_data.common.refusal`` re-exports it) and validation findings
(``schemas.findings``) share. The lower layers say *which setting* resolves a problem (a
field of ``BuildOptions``, ``TrainConfig``, ``RecorderSettings`` ..., by its dotted path), and each front end
words it: the Python API as the setting (``as_setting``), the CLI as its flag (``pipelines.cli.flags``).

A setting path may name one of several cameras by name, ``cameras[front].key``; ``camera.key`` is the one
camera's. ``command`` names another vla-data command (with its operands) the settings are for, where that is
not the one that found the problem: ``Fix({"verify": True}, "to name every damaged object", command="info d.zarr")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Fix(BaseModel):
    """Settings that together resolve a problem: dotted setting path -> the value to give (True: switch it on,
    False: leave it off or unset; a capitalised value such as ``TOPIC`` is a placeholder), and what giving them
    does."""

    model_config = ConfigDict(frozen=True)

    settings: dict[str, bool | int | float | str] = Field(description="Dotted setting path -> the value to give.")
    effect: str = Field("", description="What giving them does (worded after the settings).")
    command: str = Field("", description="The vla-data command, with its operands, the settings are for; empty: "
                         "the one that found the problem.")

    def __init__(self, settings: Mapping[str, bool | int | float | str], effect: str = "", **data: Any) -> None:
        super().__init__(settings=dict(settings), effect=effect, **data)  # positional, as refusals give them


def as_setting(fix: Fix) -> str:
    """The Python API's wording: ``set overwrite=True, action_channels=0,1,2 to ...``."""
    given = ", ".join(f"{name}={value}" for name, value in fix.settings.items())
    return f"set {given}{f' for {fix.command}' if fix.command else ''}{' ' + fix.effect if fix.effect else ''}"


def with_fixes(text: str, fixes: Sequence[Fix], word: Callable[[Fix], str], joint: str) -> str:
    """``text`` followed by each fix worded by ``word`` (``joint`` between them: "; " after a problem, ", or "
    after a hint that is itself one way out), the fixes joined by ", or "."""
    said = ", or ".join(word(f) for f in fixes)
    return f"{text}{joint}{said}" if text and said else text or said


class Refusal(Exception):
    """A request the data or the settings cannot satisfy: what is wrong (``message``) and the fixes, in order.
    Also what a notice says (``on_wait`` hears one): what happens, and what would change it."""

    def __init__(self, message: str, *fixes: Fix) -> None:
        super().__init__(message)
        self.message, self.fixes = message, fixes

    def worded(self, word: Callable[[Fix], str] = as_setting) -> str:
        """The message with each fix worded by ``word`` (the CLI passes its flag wording)."""
        return with_fixes(self.message, self.fixes, word, "; ")

    def __str__(self) -> str:
        return self.worded()


class SettingsRefusal(Refusal, ValueError):
    """Settings that do not go together, or do not fit the data. A ``ValueError`` too: raised by a pydantic
    validator, pydantic reports it as the field's error (and the CLI words its fixes as flags)."""
