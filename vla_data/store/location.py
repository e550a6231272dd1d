"""Where a store is: a local folder, or a URL, read and written through zarr's own storage layer and fsspec.

A plain path is a ``zarr.storage.LocalStore``; a URL is a ``zarr.storage.FsspecStore`` over the fsspec
filesystem of its scheme: ``s3://`` with s3fs (``pip install vla-data[s3]``), ``gs://`` with gcsfs, ``az://`` with
adlfs, ``file://`` and ``memory://`` built in. Credentials and endpoints come only from the environment and the
provider's own config files (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws/credentials``...): nothing here
takes or prints a secret. Everything that reads or writes a store (its arrays, its sidecar objects, its pointer
and lease) goes through ``StoreLocation``, so no caller knows which backend it has.

Three writes matter for safety and each backend does them its own way: ``write`` of the pointer is atomic (a
flushed temporary file and a rename locally, ``vla_data.common.files``; one PUT on object storage), ``create``
succeeds only where nothing is (a hard link locally, exclusive as ``O_EXCL``; a conditional PUT on S3), and
``delete_prefix`` removes one version's objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from vla_data.common.files import create_bytes_atomic, write_bytes_atomic


class LocationError(ValueError):
    """A store address that cannot be opened (an unknown scheme, a missing fsspec package); says which."""


class StorageError(OSError):
    """Object storage refused or could not be reached (credentials, a missing bucket, the network); the message
    names the URL and what the provider said."""


def _remote_errors() -> tuple[type[BaseException], ...]:
    """What fsspec backends raise besides OSError: botocore's own errors (no network, bad endpoint)."""
    kinds: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError

        kinds.append(BotoCoreError)
    except ImportError:
        pass
    return tuple(kinds)


HINTS = {
    "FileNotFoundError": "check the bucket name, or create the bucket",
    "PermissionError": "check the credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                       "AWS_PROFILE) or the provider's config file, and the bucket's permissions",
    "EndpointConnectionError": "check the network and the endpoint (AWS_ENDPOINT_URL for an S3-compatible server)",
    "NoCredentialsError": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment",
}


LOCAL_SCHEMES = ("file", "memory")


@dataclass(frozen=True)
class StoreLocation:
    """A store (or an object or array inside one): ``path`` for a local folder, else ``url``. Picklable, so
    loader and build workers (local processes or Dask workers) open it themselves."""

    path: Path | None = None
    url: str | None = None

    @classmethod
    def of(cls, where: str | Path | StoreLocation) -> StoreLocation:
        if isinstance(where, StoreLocation):
            return where
        text = str(where)
        if "://" in text:
            scheme, _, rest = text.partition("://")
            if not rest.strip("/"):
                raise LocationError(f"{text}: no bucket or path after {scheme}://; give the store's full address, "
                                    f"e.g. {scheme}://bucket/datasets/ds.zarr")
            return cls(url=f"{scheme}://{rest.rstrip('/')}")
        return cls(path=Path(text))

    @property
    def is_local(self) -> bool:
        return self.path is not None

    @property
    def scheme(self) -> str:
        return "file" if self.url is None else self.url.split("://", 1)[0]

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)

    def child(self, key: str) -> StoreLocation:
        """The location of ``key`` (e.g. ``data/rgb``) inside this one."""
        if self.path is not None:
            return StoreLocation(path=self.path / key)
        return StoreLocation(url=f"{self.url}/{key}")

    def zarr_store(self, writable: bool = False) -> Store:
        """A zarr store over this location, read-only unless ``writable``."""
        if self.path is not None:
            return LocalStore(self.path, read_only=not writable)
        try:
            return FsspecStore.from_url(str(self.url), storage_options=self._options(), read_only=not writable)
        except (ImportError, ValueError) as exc:
            raise LocationError(f"{self.url}: cannot open {self.scheme}:// stores here ({exc}); install the fsspec "
                                f"package for {self.scheme} (e.g. `pip install vla-data[s3]` for s3://), or give a "
                                "local path") from exc

    def _fs(self) -> tuple[Any, str]:
        """The (synchronous) fsspec filesystem of a URL, and the path in it."""
        self.zarr_store()  # an unknown scheme or a missing package: said as for reading
        return fsspec.core.url_to_fs(str(self.url), **self._options())

    def _options(self) -> dict[str, Any]:
        """fsspec options: object storage lists afresh every time (a cached listing would hide what another
        build, or this one, wrote since: a new version, a lease)."""
        return {} if self.scheme in LOCAL_SCHEMES else {"use_listings_cache": False}

    def read(self, key: str) -> bytes | None:
        """The bytes of one object of the store (``manifest.json``, ``episodes.csv``...), None when absent."""
        if self.path is not None:
            target = self.path / key
            return target.read_bytes() if target.is_file() else None
        buffer = sync(self.zarr_store().get(key, prototype=default_buffer_prototype()))
        return None if buffer is None else buffer.to_bytes()

    def keys(self, prefix: str = "") -> list[str]:
        """Every object's key in the store (under ``prefix``), sorted ('/'-separated, relative to the store)."""
        if self.path is not None and not self.path.is_dir():
            return []
        store = self.zarr_store()

        async def collect() -> list[str]:
            return [key async for key in store.list_prefix(prefix)]

        return sorted(sync(collect()))

    def children(self, prefix: str = "") -> list[str]:
        """The names directly under ``prefix`` (objects and folders alike), sorted."""
        if self.path is not None:
            folder = self.path / prefix
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        store = self.zarr_store()

        async def collect() -> list[str]:
            return [key.rstrip("/") async for key in store.list_dir(prefix)]

        return sorted(sync(collect()))

    def size(self, key: str) -> int:
        return int(sync(self.zarr_store().getsize(key)))

    def write(self, key: str, data: bytes) -> None:
        """Write one object whole. Locally through ``write_bytes_atomic`` (a flushed temporary file and a
        rename), so a reader sees the old bytes or the new, never a part; on object storage one PUT is that
        already."""
        if self.path is not None:
            write_bytes_atomic(self.path / key, data)
            return
        fs, root = self._fs()
        fs.pipe_file(f"{root}/{key}", data)

    def create(self, key: str, data: bytes) -> bool:
        """Write one object only where none is; False (nothing written) when one is there already. Exclusive
        locally (``create_bytes_atomic``: the whole object appears at once) and on S3 (a conditional PUT); on
        filesystems whose fsspec package checks then writes, two writers racing within one request's time could
        both succeed (the lease reads itself back)."""
        if self.path is not None:
            return create_bytes_atomic(self.path / key, data)
        fs, root = self._fs()
        try:
            fs.pipe_file(f"{root}/{key}", data, mode="create")
        except FileExistsError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove one object (nothing when absent)."""
        if self.path is not None:
            (self.path / key).unlink(missing_ok=True)
            return
        sync(self.zarr_store(writable=True).delete(key))

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix`` (a version's folder)."""
        if self.path is not None:
            import shutil

            folder = self.path / prefix
            if folder.exists():
                shutil.rmtree(folder)
            return
        sync(self.zarr_store(writable=True).delete_dir(prefix))


@contextmanager
def storage_errors(location: StoreLocation | str, doing: str) -> Iterator[None]:
    """Errors of object storage (or a local disk) while ``doing`` something with ``location`` become one
    ``StorageError`` that names the URL, what the provider said and what to check."""
    try:
        yield
    except StorageError:
        raise
    except _remote_errors() as exc:
        if isinstance(exc, OSError) and StoreLocation.of(location).is_local:
            raise
        hint = HINTS.get(type(exc).__name__, "")
        said = str(exc) or type(exc).__name__
        raise StorageError(f"{location}: {doing} failed: {said}" + (f" ({hint})" if hint else "")) from exc
