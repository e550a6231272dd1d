"""What vla-data may delete or replace: only what it can prove it made.

A store carries ``vla-data-store.json`` (``schemas.store.StoreMarker``) from the moment its staging folder is
created, and ``manifest.json`` once complete; stores built before the marker existed are known by a manifest
that parses. Anything else at an output path (a folder of recordings, notes, another tool's data) is never
touched: the build is refused with a listing of what is there. An output that is, holds or lies inside a
source folder is refused too, whatever it holds.
"""

from __future__ import annotations

import shutil
from enum import StrEnum
from pathlib import Path

from schemas.store import StoreManifest, StoreMarker
from vla_data.refusal import Refusal

MARKER = "vla-data-store.json"
MANIFEST = "manifest.json"
LISTED = 8  # entries named when a folder is refused


class OwnershipError(Refusal):
    """vla-data refuses to write to, replace or delete a path it did not make; the message says what is there."""


class Ownership(StrEnum):
    absent = "absent"
    empty = "empty"  # an empty folder: nothing to lose
    store = "store"  # a complete vla-data store (its manifest parses)
    incomplete = "incomplete"  # vla-data's marker, no complete manifest: an interrupted build or a damaged store
    foreign = "foreign"  # anything else


def ownership(path: Path) -> Ownership:
    if not path.exists() and not path.is_symlink():
        return Ownership.absent
    if path.is_symlink() or not path.is_dir():
        return Ownership.foreign
    if not any(path.iterdir()):
        return Ownership.empty
    try:
        StoreManifest.model_validate_json((path / MANIFEST).read_text())
        return Ownership.store
    except (OSError, ValueError):
        pass
    try:
        StoreMarker.model_validate_json((path / MARKER).read_text())
        return Ownership.incomplete
    except (OSError, ValueError):
        return Ownership.foreign


def listing(path: Path) -> str:
    """What a folder holds, for a refusal: the first few names and how many there are."""
    if not path.is_dir():
        return "a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:LISTED]) + (f", ... ({len(names)} entries)" if len(names) > LISTED else "")
    return f"it holds {shown}"


def is_ours(path: Path) -> bool:
    return ownership(path) in (Ownership.store, Ownership.incomplete)


def remove_ours(path: Path) -> None:
    """Delete a store or staging folder vla-data made (or an empty folder); refuse anything else."""
    kind = ownership(path)
    if kind == Ownership.absent:
        return
    if kind == Ownership.empty:
        path.rmdir()
        return
    if kind == Ownership.foreign:
        raise OwnershipError(f"{path} is not a vla-data store ({listing(path)}); vla-data never deletes it")
    shutil.rmtree(path)


def mark(folder: Path, marker: StoreMarker) -> None:
    """Create ``folder`` (it must not exist) and claim it as vla-data's, before anything else is written."""
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(marker.model_dump_json(indent=2) + "\n")


def check_output(out: Path, sources: list[Path]) -> None:
    """Refuse an output that overlaps a source folder, or that holds something vla-data did not make.

    ``out`` and ``sources`` are absolute. A source file's folder counts as a source folder.
    """
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
    kind = ownership(out)
    if kind == Ownership.foreign:
        raise OwnershipError(
            f"-o {out} is not a vla-data store ({listing(out)}); vla-data replaces only stores it built, "
            "so nothing there was touched: choose a new or empty folder for the store"
        )
