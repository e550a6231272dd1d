"""What vla-data may delete or replace: only what it can prove it made.

A store carries ``vla-data-store.json`` (``schemas.store.StoreMarker``) from the moment it is created, and
``current.json`` (the pointer to its current version, ``vla_data.store.versions``) once a build has committed; stores
built before versions are known by a top-level ``manifest.json`` that parses, and stores built before the
marker existed by that manifest alone. The same rules hold for a store on object storage (its URL's prefix). Anything else at an output path (a folder of recordings, notes, another tool's data) is never
touched: the build is refused with a listing of what is there. An output that is, holds or lies inside a
source folder is refused too, whatever it holds.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from schemas.store import StoreManifest, StoreMarker, StorePointer
from vla_data.common.files import is_temporary_of
from vla_data.store.layout import LEASE, MANIFEST, MARKER, POINTER
from vla_data.store.location import StoreLocation
from vla_data.common.refusal import Refusal

LISTED = 8  # entries named when a folder is refused


class OwnershipError(Refusal):
    """vla-data refuses to write to, replace or delete a path it did not make; the message says what is there."""


class Ownership(StrEnum):
    absent = "absent"
    empty = "empty"  # an empty folder: nothing to lose
    store = "store"  # a complete vla-data store (its pointer, or before versions its manifest, parses)
    incomplete = "incomplete"  # vla-data's marker, no complete manifest: an interrupted build or a damaged store
    foreign = "foreign"  # anything else


def ownership(path: Path) -> Ownership:
    if not path.exists() and not path.is_symlink():
        return Ownership.absent
    if path.is_symlink() or not path.is_dir():
        return Ownership.foreign
    if all(is_temporary_of(entry.name, MARKER) for entry in path.iterdir()):
        return Ownership.empty  # nothing, or a build's marker being created this instant (create_bytes_atomic)
    return _claimed(StoreLocation(path=path))


def _claimed(store: StoreLocation) -> Ownership:
    """A store (pointer or manifest), vla-data's but unfinished (marker alone), or someone else's."""
    for key, model in ((POINTER, StorePointer), (MANIFEST, StoreManifest)):
        try:
            model.model_validate_json(store.read(key) or b"")
            return Ownership.store
        except (OSError, ValueError):
            pass
    try:
        StoreMarker.model_validate_json(store.read(MARKER) or b"")
        return Ownership.incomplete
    except (OSError, ValueError):
        return Ownership.foreign


def ownership_of(store: StoreLocation) -> Ownership:
    """``ownership`` of a local folder or of a URL's prefix (absent when no object lies under it)."""
    if store.path is not None:
        return ownership(store.path)
    names = store.children()
    if names == [LEASE]:  # a first build holds the lease and has not claimed the prefix yet
        return Ownership.incomplete
    return _claimed(store) if names else Ownership.absent


def listing(path: Path | StoreLocation) -> str:
    """What a folder (or a URL's prefix) holds, for a refusal: the first few names and how many there are."""
    if isinstance(path, StoreLocation) and path.path is None:
        names = path.children()
    else:
        folder = path.path if isinstance(path, StoreLocation) else path
        if not folder.is_dir():
            return "a file, not a folder"
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(names[:LISTED]) + (f", ... ({len(names)} entries)" if len(names) > LISTED else "")
    return f"it holds {shown}"


def claim(store: StoreLocation, marker: StoreMarker) -> None:
    """Claim ``store`` as vla-data's before anything else is written there: its marker, created where there is
    none yet (a store already claimed keeps its first marker)."""
    store.create(MARKER, (marker.model_dump_json(indent=2) + "\n").encode())


def check_output(store: StoreLocation, sources: list[Path]) -> None:
    """Refuse an output that overlaps a source folder, or that holds something vla-data did not make.

    A local ``store`` and ``sources`` are absolute. A source file's folder counts as a source folder.
    """
    if store.path is None:
        if ownership_of(store) == Ownership.foreign:
            raise OwnershipError(
                f"-o {store} is not a vla-data store ({listing(store)}); vla-data replaces only stores it built, "
                "so nothing there was touched: choose a new prefix for the store")
        return
    out = store.path
    nearest = next(p for p in out.parents if p.exists())
    if not nearest.is_dir():
        raise OwnershipError(f"-o {out}: {nearest} is a file, not a folder; choose an output in a folder")
    for source in sources:
        folder = source if source.is_dir() else source.parent
        if out == folder or folder in out.parents:
            where = "is" if out == folder else "lies inside"
            raise OwnershipError(
                f"-o {out} {where} the source folder {folder}: vla-data never writes among the recordings; "
                f"write the store beside them, e.g. -o {folder.parent / 'dataset.zarr'}"
            )
        if out in source.parents:
            raise OwnershipError(
                f"-o {out} holds the source {source}: a store there would be written over the recordings; "
                f"write the store beside the recordings instead, e.g. -o {out / 'dataset.zarr'}"
            )
    inside = next((p for p in out.parents if ownership(p) in (Ownership.store, Ownership.incomplete)), None)
    if inside is not None:
        raise OwnershipError(f"-o {out} lies inside the store {inside}: a store is written beside another, never "
                             f"in it; e.g. -o {inside.parent / out.name}")
    kind = ownership(out)
    if kind == Ownership.foreign:
        raise OwnershipError(
            f"-o {out} is not a vla-data store ({listing(out)}); vla-data replaces only stores it built, "
            "so nothing there was touched: choose a new or empty folder for the store"
        )
