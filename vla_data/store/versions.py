"""A store's versions: every build writes a new version under its own prefix and commits by one write of the
pointer (the layout: ``vla_data.store.layout``).

Nothing is renamed, so the same design serves a local folder and object storage (which has no atomic
rename): a reader opens what ``current.json`` names, so it sees the previous complete version or the new one,
never a part of one. A version is never written again once written, so a build never rewrites what a
published pointer names. A committed version stays when a later one supersedes it: the current version's
history (``vla_data.store.history``) names every committed one. What else lies under ``versions/`` (and no tag
names) is a leftover: a version a build wrote but never committed (killed). Leftovers are removed only by a
build or `vla-data gc` holding the store's writer lock: then no build can be writing them, and the history
proves they were never committed; committed versions go only by the retention rule `vla-data gc` is given.

A store built before versions (its manifest at the top) is read as it is; the next build
writes its first version beside the old objects, commits, then removes the names such a store has at its
top (``data/``, ``meta/``, ``zarr.json``, the episode table, the build log, the manifest) and nothing else.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from schemas.history import Retention
from schemas.store import StorePointer
from vla_data import __version__
from vla_data.store.history import read_history, tags
from vla_data.store.location import StoreLocation
from vla_data.store.layout import (
    MANIFEST,
    POINTER,
    SEGMENT,
    SEGMENTS,
    SINGLE_LAYOUT_FOLDERS,
    SINGLE_LAYOUT_OBJECTS,
    VERSIONS,
    version_prefix,
)


class PointerError(ValueError):
    """``current.json`` is there but does not parse."""


def read_pointer(store: StoreLocation) -> StorePointer | None:
    raw = store.read(POINTER)
    if raw is None:
        return None
    try:
        return StorePointer.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        raise PointerError(f"{store}/{POINTER}: unreadable ({exc})") from exc


def objects_of(store: StoreLocation, pointer: StorePointer | None) -> StoreLocation:
    """Where a version's objects lie: ``versions/<id>`` for a pointer, the store itself for a store built before
    versions (no pointer)."""
    return store if pointer is None else store.child(version_prefix(pointer.version))


def next_pointer(store: StoreLocation) -> StorePointer:
    """The pointer a new build will commit: one past the highest sequence under ``versions/``."""
    seen = [int(v[1:7]) for v in version_ids(store) if v[1:7].isdigit()]
    current = read_pointer(store)
    sequence = max([*seen, current.sequence if current else 0]) + 1
    return StorePointer(version=f"v{sequence:06d}-{secrets.token_hex(4)}", tool_version=__version__,
                        created=datetime.now(UTC).isoformat(timespec="seconds"))


def commit(store: StoreLocation, pointer: StorePointer) -> None:
    """Point readers at ``pointer``'s version: the one write after which the new version is the store."""
    store.write(POINTER, (pointer.model_dump_json(indent=2) + "\n").encode())


def version_ids(store: StoreLocation) -> list[str]:
    return store.children(VERSIONS)


@dataclass(frozen=True)
class Leftover:
    """A version whose data can go: a build's that never committed, or a committed one the retention rule no
    longer keeps (``dropped``: its record stays in the history); or a segment no remaining version references
    (``segment``)."""

    version: str
    complete: bool  # True: its manifest (a segment: its segment.json) was written; False: its build never finished
    dropped: bool = False  # a committed version beyond the retention rule
    segment: bool = False

    def describe(self) -> str:
        if self.segment:
            why = "frames no kept version references" if self.complete else "unfinished build"
            return f"{SEGMENTS}/{self.version} ({why})"
        why = ("committed, beyond the retention rule" if self.dropped else
               "written but never committed" if self.complete else "unfinished build")
        return f"{VERSIONS}/{self.version} ({why})"


def leftovers(store: StoreLocation, retention: Retention | None = None) -> list[Leftover]:
    """The versions under ``versions/`` that no commit made part of the store's history and no tag names
    (killed builds' versions), oldest first; with ``retention``, also the committed ones it does not keep."""
    current = read_pointer(store)
    history = read_history(store, current)
    tagged = {t.version for t in tags(store).values()}
    kept = set(history.ids()) | tagged
    if retention is not None:
        kept = retention.kept(history, tagged, datetime.now(UTC))
    committed = set(history.ids())
    versions = [Leftover(v, store.read(f"{VERSIONS}/{v}/{MANIFEST}") is not None, v in committed)
                for v in version_ids(store) if v not in kept and (current is None or v != current.version)]
    going = {v.version for v in versions}
    referenced = {s for v in version_ids(store) if v not in going for s in _segments_of(store, v)}
    segments = [Leftover(s, store.read(f"{SEGMENTS}/{s}/{SEGMENT}") is not None, segment=True)
                for s in store.children(SEGMENTS) if s not in referenced]
    return versions + segments


def _segments_of(store: StoreLocation, version: str) -> list[str]:
    """The segments a version's manifest references ([] for a version without a manifest, or of format 1 or 2)."""
    raw = store.read(f"{VERSIONS}/{version}/{MANIFEST}")
    try:
        segments = json.loads(raw).get("segments", {}) if raw is not None else {}
    except (ValueError, AttributeError):
        segments = {}
    return list(segments) if isinstance(segments, dict) else []


def remove_leftovers(store: StoreLocation, retention: Retention | None = None) -> list[Leftover]:
    """Remove the ``leftovers`` (with ``retention``: also the committed versions it does not keep, then the
    segments only they referenced), and the objects of a store built before versions once a version replaced it;
    what was removed. Only with the store's writer lock held (see the module doc)."""
    gone = leftovers(store, retention)
    for leftover in gone:
        # the record first (a version's manifest, a segment's segment.json): a removal killed half-way leaves
        # what reads as removed, never a version that opens with objects missing
        where = f"{SEGMENTS if leftover.segment else VERSIONS}/{leftover.version}"
        store.delete(f"{where}/{SEGMENT if leftover.segment else MANIFEST}")
        store.delete_prefix(where)
    if read_pointer(store) is not None:
        _remove_single(store)
    return gone


def _remove_single(store: StoreLocation) -> None:
    """The objects of the store as it was before versions: the names such a store has at its top (inside a
    folder or prefix that vla-data's marker claims), nothing else."""
    for name in SINGLE_LAYOUT_FOLDERS:
        store.delete_prefix(name)
    for name in SINGLE_LAYOUT_OBJECTS:
        store.delete(name)
