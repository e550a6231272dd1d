"""A store's history: each committed version's record (``history.json`` in the version, carrying every record
from the store's first version on), its tags (``tags/<name>.json``, create-only), addressing a version as
``STORE@VERSION`` or ``STORE@TAG``, and which versions the retention rule keeps.

A version is *committed* when it is on the current version's history; every other version under ``versions/``
that no tag names is a leftover of a build that never committed (``vla_data.store.versions``).
"""

from __future__ import annotations

import difflib
import getpass
import io
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from schemas.history import History, TagRecord, VersionChange, VersionRecord, is_tag_name, is_version_id
from schemas.store import BuildLog, EpisodeRecord, StorePointer
from vla_data import __version__
from vla_data.common.invocation import command
from vla_data.common.refusal import Fix, Refusal
from vla_data.store.layout import BUILD_LOG, EPISODES, HISTORY, MANIFEST, TAGS, tag_key, version_prefix
from vla_data.store.location import StoreLocation


class VersionError(Refusal):
    """A version or tag that does not exist, or cannot be made; the message names what there is."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def read_history(store: StoreLocation, pointer: StorePointer | None) -> History:
    """The history up to the version ``pointer`` names; a version written before histories existed reads as
    one record of its own (from its pointer)."""
    if pointer is None:
        return History()
    raw = store.read(f"{version_prefix(pointer.version)}/{HISTORY}")
    if raw is not None:
        try:
            return History.model_validate_json(raw)
        except (ValidationError, ValueError) as exc:
            raise VersionError(f"{store}/{version_prefix(pointer.version)}/{HISTORY}: unreadable ({exc})") from exc
    return History(versions=[VersionRecord(version=pointer.version, created=pointer.created, command="(before history)",
                                           host="", user="", tool_version=pointer.tool_version,
                                           change=_change_before_history(store.child(version_prefix(pointer.version))))])


def _change_before_history(objects: StoreLocation) -> VersionChange:
    """What a version written before histories holds, and what its build log says its build added."""
    records = episode_table(objects)
    try:
        runs = BuildLog.model_validate_json(objects.read(BUILD_LOG) or b'{"runs": []}').runs
    except (ValidationError, ValueError):
        runs = []
    return VersionChange(added=runs[-1].added if runs else [], episodes=len(records),
                         frames=sum(r.n_frames for r in records))


def version_history(store: StoreLocation, version: str) -> History:
    """The history of one version (its own ``history.json``)."""
    raw = store.read(f"{version_prefix(version)}/{HISTORY}")
    return History() if raw is None else History.model_validate_json(raw)


def episode_table(objects: StoreLocation) -> list[EpisodeRecord]:
    """A version's episode table, or [] where there is none."""
    raw = objects.read(EPISODES)
    if raw is None:
        return []
    table = pd.read_csv(io.BytesIO(raw), keep_default_na=False)
    return [EpisodeRecord.model_validate(row) for row in table.to_dict("records")]


def change_between(old: list[EpisodeRecord], new: list[EpisodeRecord]) -> VersionChange:
    """What ``new`` changed against ``old``, episodes matched by content hash and named by source."""
    before = {r.content_hash: r for r in old}
    after = {r.content_hash: r for r in new}
    return VersionChange(
        added=[r.source_path for h, r in after.items() if h not in before],
        removed=[r.source_path for h, r in before.items() if h not in after],
        relabelled=[r.source_path for h, r in after.items() if h in before and before[h].instruction != r.instruction],
        moved=[r.source_path for h, r in after.items() if h in before and before[h].split != r.split],
        episodes=len(new), frames=sum(r.n_frames for r in new))


def next_history(parent: History, version: str, change: VersionChange) -> History:
    """``parent`` extended by the record of ``version``, made by this process now."""
    record = VersionRecord(version=version, parent=parent.versions[-1].version if parent.versions else None,
                           created=now_iso(), command=command(), host=socket.gethostname(),
                           user=_user(), tool_version=__version__, change=change)
    return History(versions=[*parent.versions, record])


def tags(store: StoreLocation) -> dict[str, TagRecord]:
    """Every tag of the store, by name (a tag object that does not parse is left out)."""
    out = {}
    for key in store.children(TAGS):
        raw = store.read(f"{TAGS}/{key}")
        try:
            record = TagRecord.model_validate_json(raw or b"")
        except (ValidationError, ValueError):
            continue
        out[record.name] = record
    return out


def present(store: StoreLocation, version: str) -> bool:
    """The version's data is there (not dropped by gc, nor deleted)."""
    return store.read(f"{version_prefix(version)}/{MANIFEST}") is not None


def resolve(store: StoreLocation, ref: str, history: History) -> str:
    """The version id ``ref`` names (a version id or a tag), present in the store; else a ``VersionError``
    naming the closest version or tag there is."""
    named = tags(store)
    if ref in named:
        version = named[ref].version
    elif is_version_id(ref):
        version = ref
    else:
        known = [*named, *history.ids()]
        close = difflib.get_close_matches(ref, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else f"; it has {_listed(known)}"
        raise VersionError(f"{store}: no version or tag {ref!r}{hint} (`vla-data log {store}` lists them)")
    if not present(store, version):
        dropped = version in history.ids()
        close = difflib.get_close_matches(version, [v for v in history.ids() if present(store, v)], n=1, cutoff=0.5)
        why = "its data was removed by gc (the log still lists it)" if dropped else "no such version"
        raise VersionError(f"{store}: version {version}: {why}" + (f"; did you mean {close[0]}?" if close else "")
                           + f" (`vla-data log {store}` lists the versions)")
    return version


def _listed(names: list[str]) -> str:
    return (", ".join(names[-5:]) + (f" (and {len(names) - 5} more)" if len(names) > 5 else "")) if names else "none"


def create_tag(store: StoreLocation, name: str, version: str) -> TagRecord:
    """Tag ``version`` as ``name`` (create-only: a tag that exists is refused, naming its version)."""
    if not is_tag_name(name):
        raise VersionError(f"{name!r} is not a tag name: a tag starts with a letter, then letters, digits, '.', '_' "
                           "or '-' (at most 64), and is not shaped like a version id (v000001-1f0c9a3e)")
    record = TagRecord(name=name, version=version, created=now_iso(), user=_user())
    if not store.create(tag_key(name), (record.model_dump_json(indent=2) + "\n").encode()):
        existing = tags(store).get(name)
        raise VersionError(f"{store}: tag {name} exists already" + (f" (on {existing.version})" if existing else "")
                           + "; tags never move: choose another name",
                           Fix({"delete": True}, "to delete it first", command=f"tag {store} {name}"))
    return record


def delete_tag(store: StoreLocation, name: str) -> TagRecord:
    record = tags(store).get(name)
    if record is None:
        raise VersionError(f"{store}: no tag {name!r} (it has {_listed(sorted(tags(store)))})")
    store.delete(tag_key(name))
    return record


@dataclass(frozen=True)
class StoreAddress:
    """What a reader was asked to open: a store (path or URL) and, with ``STORE@REF``, one version or tag."""

    location: str
    ref: str | None = None


def parse_address(where: str | Path) -> StoreAddress:
    """``STORE``, ``STORE@VERSION`` or ``STORE@TAG``. A trailing ``@`` ends a path that itself holds ``@``
    (``data@2024@`` is the folder ``data@2024``); a local folder named like ``STORE@REF`` while ``STORE`` is a
    folder too is ambiguous and refused, saying so."""
    text = str(where)
    base, mark, ref = text.rpartition("@")
    if not mark:
        return StoreAddress(text)
    if not ref:
        return StoreAddress(base)
    if not base or not (is_version_id(ref) or is_tag_name(ref)):
        return StoreAddress(text)
    if "://" not in text and Path(text).exists():
        if Path(base).exists():
            raise VersionError(f"{text} is both a folder and {base} at version or tag {ref}: end it with '@' "
                               f"({text}@) for the folder, or rename one of them")
        return StoreAddress(text)
    return StoreAddress(base, ref)
