"""Kosmos-2 + LoRA policy, trainer and inference runtime.

``vla_model.Policy`` (``Policy.from_checkpoint(path)``, ``predict``) and ``vla_model.PolicyRunner`` (a robot
loop) are imported on first use, so importing ``vla_model.checkpoint`` alone stays light.
"""

from importlib import import_module

_LAZY = {"Policy": "vla_model.runtime", "PolicyRunner": "vla_model.runtime"}
__all__ = ["Policy", "PolicyRunner"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vla_model' has no attribute {name!r}")
