"""Edits of a store without a rebuild: each a new version whose episodes are carried from the current one, so
no frame is read or written (``vla_data.store.writer.write_version`` with every episode carried): only the
episode table, the stats (recomputed exactly from each episode's actions and image sums) and the history.

``remove``, ``relabel``, ``resplit`` change the current version's episodes; ``restore`` makes a new version
equal to an older one (a rollback that loses no history). Each takes the store's writer lock (a second edit
or a build waits, or refuses), and a kill at any moment leaves the previous version current or the new one.
Episode ids are positions in a version's table: after a remove the later episodes' ids close the gap (their
content hash is what follows them from version to version).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from schemas.edits import EpisodeSelection, Relabel, Resplit
from schemas.recorder import InstructionSource
from schemas.store import BuildOptions, EpisodeRecord, RemovedEpisode, Split, StoreManifest
from vla_data.common.refusal import Refusal
from vla_data.store.errors import StoreError
from vla_data.store.history import change_between
from vla_data.store.location import StoreLocation, storage_errors
from vla_data.store.reader import DatasetStore, open_store
from vla_data.store.versions import remove_leftovers
from vla_data.store.writer import EpisodeInput, write_version
from vla_data.store.writer_lock import writer_lock

HASH_PREFIX = 8  # the shortest content-hash prefix that names an episode


class EditError(StoreError):
    """An edit that cannot be made as asked; nothing was written."""


def select(store: DatasetStore, selection: EpisodeSelection) -> list[int]:
    """The positions of the selected episodes in the store's table, in table order; an episode named that the
    store does not hold, a query with an error or one that matches nothing is refused, saying which."""
    table = store.episodes
    chosen: set[int] = set()
    for name in selection.episodes:
        chosen |= set(_named(table, name, store.location))
    if selection.where is not None:
        try:
            matched = table.query(selection.where, engine="python")
        except Exception as exc:  # pandas raises many kinds for a bad query (syntax, unknown column, types)
            raise EditError(f"query {selection.where!r}: {type(exc).__name__}: {exc}; the episode table has "
                            f"columns {', '.join(table.columns)}") from exc
        if matched.empty:
            raise EditError(f"query {selection.where!r} matches no episode of {store.location}")
        chosen |= set(matched.index.tolist())
    return sorted(chosen)


def _named(table: pd.DataFrame, name: str, where: StoreLocation) -> list[int]:
    if name.isdigit():
        if int(name) < len(table):
            return [int(name)]
        raise EditError(f"{where}: no episode {name}: its episodes are 0..{len(table) - 1}")
    paths = table["source_path"].astype(str)
    for candidates in (paths == name, paths.map(lambda p: Path(p).name == name or Path(p).stem == name)):
        found = table.index[candidates].tolist()
        if found:
            return found
    if len(name) >= HASH_PREFIX:
        found = table.index[table["content_hash"].astype(str).str.startswith(name)].tolist()
        if found:
            return found
    close = difflib.get_close_matches(name, [Path(p).name for p in paths], n=1, cutoff=0.6)
    raise EditError(f"{where}: no episode {name!r}" + (f"; did you mean {close[0]}?" if close else "")
                    + " (an episode is named by its id, its source's name or path, or its content hash)")


Edit = Callable[[DatasetStore], tuple[DatasetStore, list[EpisodeRecord]]]


def _commit_edit(location: StoreLocation, edit: Edit,
                 wait: bool, on_wait: Callable[[Refusal], None] | None, restoring: bool = False
                 ) -> tuple[StoreManifest | None, DatasetStore]:
    """Under the writer lock: open the current version, let ``edit`` say the new episodes (and which version's
    data they are carried from), and write them as a new version; None when nothing would change. The splits
    are checked (``restoring``: not; a version the store had is whole as it was)."""
    with storage_errors(location, "editing the store"), writer_lock(location, wait, on_wait):
        current = open_store(location)
        source, records = edit(current)
        records = [r.model_copy(update={"episode": i}) for i, r in enumerate(records)]
        if records == current.records():
            return None, current  # nothing would change: nothing written
        if not restoring:
            _check_splits(current, records)
        remove_leftovers(location)
        m = source.manifest
        options = BuildOptions(preprocessing=m.preprocessing, splits=m.splits, norm_mode=m.stats.mode)
        log = source.build_log()
        kept = {r.content_hash for r in records}
        gone = [RemovedEpisode(source_path=r.source_path, content_hash=r.content_hash, version=current.version or "")
                for r in current.records() if r.content_hash not in kept]
        log.removed = [e for e in log.removed if e.content_hash not in kept] + (gone if not restoring else [])
        manifest = write_version(location, source, [EpisodeInput.copied(r) for r in records], m.actions, m.features,
                                 options, log)
        return manifest, current


def _check_splits(current: DatasetStore, records: list[EpisodeRecord]) -> None:
    """An edit may not leave the train split empty, nor empty a split that held episodes."""
    before = {s: int((current.episodes["split"] == s.value).sum()) for s in Split}
    after = {s: sum(r.split == s for r in records) for s in Split}
    if after[Split.train] == 0:
        raise EditError(f"{current.location}: the edit would leave no train episode (train {before[Split.train]} -> 0); "
                        "a store needs train episodes to train on and to compute its stats")
    emptied = [s.value for s in Split if before[s] and not after[s]]
    if emptied:
        raise EditError(f"{current.location}: the edit would remove every episode of split {', '.join(emptied)} "
                        f"({', '.join(f'{s} {before[Split(s)]} -> 0' for s in emptied)}); move episodes there first, "
                        "or build the store again with other split ratios")


def remove(location: StoreLocation, selection: EpisodeSelection, wait: bool = True,
           on_wait: Callable[[Refusal], None] | None = None) -> tuple[StoreManifest | None, list[EpisodeRecord]]:
    """A new version without the selected episodes; the manifest written and the episodes removed."""
    removed: list[EpisodeRecord] = []

    def edit(current: DatasetStore) -> tuple[DatasetStore, list[EpisodeRecord]]:
        chosen = set(select(current, selection))
        records = current.records()
        removed.extend(r for i, r in enumerate(records) if i in chosen)
        return current, [r for i, r in enumerate(records) if i not in chosen]

    manifest, _ = _commit_edit(location, edit, wait, on_wait)
    return manifest, removed


def relabel(location: StoreLocation, selection: EpisodeSelection | None, labels: Relabel, wait: bool = True,
            on_wait: Callable[[Refusal], None] | None = None) -> tuple[StoreManifest | None, list[EpisodeRecord]]:
    """A new version with new instructions (the frames, actions and content hashes as they were); the episodes
    whose instruction changed, as they are now."""
    def edit(current: DatasetStore) -> tuple[DatasetStore, list[EpisodeRecord]]:
        records = current.records()
        new: dict[int, str] = {}
        if labels.instruction is not None:
            assert selection is not None
            new = dict.fromkeys(select(current, selection), labels.instruction)
        for name, text in labels.per_episode.items():
            for i in _named(current.episodes, name, current.location):
                new[i] = text
        return current, [r.model_copy(update={"instruction": new[i].strip(), "instruction_source": InstructionSource.relabel})
                         if i in new else r for i, r in enumerate(records)]

    manifest, before = _commit_edit(location, edit, wait, on_wait)
    return manifest, _changed(before, location, manifest, "relabelled")


def resplit(location: StoreLocation, selection: EpisodeSelection | None, move: Resplit, wait: bool = True,
            on_wait: Callable[[Refusal], None] | None = None) -> tuple[StoreManifest | None, list[EpisodeRecord]]:
    """A new version with the selected episodes in split ``move.to`` (or each named episode in its split of
    ``move.per_episode``), stats recomputed over the new train split; the episodes that moved."""
    def edit(current: DatasetStore) -> tuple[DatasetStore, list[EpisodeRecord]]:
        to: dict[int, Split] = {}
        if move.to is not None:
            assert selection is not None
            to = dict.fromkeys(select(current, selection), move.to)
        for name, split in move.per_episode.items():
            to |= dict.fromkeys(_named(current.episodes, name, current.location), split)
        return current, [r.model_copy(update={"split": to[i]}) if i in to else r
                         for i, r in enumerate(current.records())]

    manifest, before = _commit_edit(location, edit, wait, on_wait)
    return manifest, _changed(before, location, manifest, "moved")


def restore(location: StoreLocation, version: str, wait: bool = True,
            on_wait: Callable[[Refusal], None] | None = None) -> tuple[StoreManifest | None, str]:
    """A new version equal to version ``version`` (a version id or tag, present in the store): its episodes,
    splits, labels and stats; the history keeps every version between. The version id restored."""
    restored: list[str] = []

    def edit(current: DatasetStore) -> tuple[DatasetStore, list[EpisodeRecord]]:
        older = open_store(f"{location}@{version}")
        restored.append(older.version or version)
        return older, older.records()

    manifest, _ = _commit_edit(location, edit, wait, on_wait, restoring=True)
    return manifest, restored[0]


def _changed(before: DatasetStore, location: StoreLocation, manifest: StoreManifest | None,
             kind: str) -> list[EpisodeRecord]:
    if manifest is None:
        return []
    after = open_store(location).records()
    names = set(getattr(change_between(before.records(), after), kind))
    return [r for r in after if r.source_path in names]


def read_relabel_csv(path: Path) -> Relabel:
    """`--from-csv`: rows of episode (an id, source name or path, or content hash) and instruction."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise EditError(f"{path}: cannot read it as CSV ({exc})") from exc
    if list(table.columns[:2]) != ["episode", "instruction"]:
        raise EditError(f"{path}: columns {', '.join(table.columns)}; the file needs the columns episode,instruction "
                        "(a first line `episode,instruction`, then rows such as `12,Go to the red chair`)")
    if table.empty:
        raise EditError(f"{path}: no rows")
    try:
        return Relabel(per_episode=dict(zip(table["episode"], table["instruction"], strict=True)))
    except ValueError as exc:
        raise EditError(f"{path}: {exc}") from exc
