"""Refusals that name their fix by setting, not by flag: the lower layers say *which setting* resolves a
refusal (a field of ``BuildOptions``, ``TrainConfig`` or ``RecorderSettings``, by its dotted path), and each
front end words it: the CLI as its flag (``pipelines.wording``), the Python API as the setting itself.

```python
raise StoreError("dataset.zarr keeps channels [0, 1]", Fix({"overwrite": True}, "to change them"))
str(exc)              # 'dataset.zarr keeps channels [0, 1]; set overwrite=True to change them'
exc.worded(as_flag)   # 'dataset.zarr keeps channels [0, 1]; pass --overwrite to change them'
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Fix:
    """Settings that together resolve a refusal: dotted setting path -> the value to give (True: switch it on,
    False: leave it off or unset), and what giving them does."""

    settings: Mapping[str, str | bool]
    effect: str = ""


def as_setting(fix: Fix) -> str:
    """The Python API's wording: ``set overwrite=True, action_channels=0,1,2 to ...``."""
    given = ", ".join(f"{name}={value}" for name, value in fix.settings.items())
    return f"set {given}{' ' + fix.effect if fix.effect else ''}"


class Refusal(Exception):
    """A request the data or the settings cannot satisfy: what is wrong (``message``) and the fixes, in order."""

    def __init__(self, message: str, *fixes: Fix) -> None:
        super().__init__(message)
        self.message, self.fixes = message, fixes

    def worded(self, word: Callable[[Fix], str] = as_setting) -> str:
        """The message with each fix worded by ``word`` (the CLI passes its flag wording)."""
        if not self.fixes:
            return self.message
        return f"{self.message}; {', or '.join(word(f) for f in self.fixes)}"

    def __str__(self) -> str:
        return self.worded()
