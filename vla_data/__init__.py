"""Reading recorder episodes, validation, the zarr store, and the windowed/chunked torch datasets.

``vla_data.WindowDataset`` and ``vla_data.make_loader`` are imported on first use, so the commands that do
not need torch (validate, build-splits, info) start without loading it.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vla-data")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_LAZY = {"WindowDataset": "vla_data.samples.dataset", "make_loader": "vla_data.samples.loader"}
__all__ = ["WindowDataset", "__version__", "make_loader"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vla_data' has no attribute {name!r}")
