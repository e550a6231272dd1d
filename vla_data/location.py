"""Where a store is: a local folder, or a URL, opened through zarr's own storage layer.

A plain path is a ``zarr.storage.LocalStore``; a URL (``file://...`` today; ``s3://``, ``gs://`` and the like once
their fsspec package is installed) is a ``zarr.storage.FsspecStore``. Everything that reads a store, its arrays
and its sidecar files (manifest, episode table, build log) alike, goes through ``StoreLocation``, so a store on
object storage needs no caller to change. Writing stays local (``vla_data.store_writer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore


class LocationError(ValueError):
    """A store address that cannot be opened (an unknown scheme, a missing fsspec package); says which."""


@dataclass(frozen=True)
class StoreLocation:
    """A store (or an array inside one): ``path`` for a local folder, else ``url``. Picklable, so loader and
    build workers open it themselves."""

    path: Path | None = None
    url: str | None = None

    @classmethod
    def of(cls, where: str | Path | StoreLocation) -> StoreLocation:
        if isinstance(where, StoreLocation):
            return where
        text = str(where)
        if "://" in text:
            return cls(url=text.rstrip("/"))
        return cls(path=Path(text))

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)

    def child(self, key: str) -> StoreLocation:
        """The location of ``key`` (e.g. ``data/rgb``) inside this one."""
        if self.path is not None:
            return StoreLocation(path=self.path / key)
        return StoreLocation(url=f"{self.url}/{key}")

    def zarr_store(self) -> Store:
        """A read-only zarr store over this location."""
        if self.path is not None:
            return LocalStore(self.path, read_only=True)
        try:
            return FsspecStore.from_url(str(self.url), read_only=True)
        except (ImportError, ValueError) as exc:
            scheme = str(self.url).split("://", 1)[0]
            raise LocationError(f"{self.url}: cannot open {scheme}:// stores here ({exc}); install the fsspec "
                                f"package for {scheme} (e.g. s3fs for s3://), or give a local path") from exc

    def read(self, key: str) -> bytes | None:
        """The bytes of one object of the store (``manifest.json``, ``episodes.csv``...), None when absent."""
        if self.path is not None and (self.path / key).is_dir():
            return None
        buffer = sync(self.zarr_store().get(key, prototype=default_buffer_prototype()))
        return None if buffer is None else buffer.to_bytes()

    def keys(self) -> list[str]:
        """Every object's key in the store, sorted ('/'-separated, relative to the store)."""
        store = self.zarr_store()

        async def collect() -> list[str]:
            return [key async for key in store.list()]

        if self.path is not None and not self.path.is_dir():
            return []
        return sorted(sync(collect()))

    def size(self, key: str) -> int:
        return int(sync(self.zarr_store().getsize(key)))
