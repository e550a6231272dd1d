"""Reading recorder episodes, synthetic episodes, validation; the zarr store and datasets arrive later."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vla-data")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
