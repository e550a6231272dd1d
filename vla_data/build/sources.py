"""Reading a build's sources: each usable source episode with its content hash. A stored source file whose stamp
(size, mtime, quick hash) has not changed is recognised without reading it, neither validated again
(``recognised``) nor hashed again (``read_sources``); the others are validated, read and hashed (here, or by a
Dask cluster's workers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from schemas import FileReport, InstructionSource, RecorderSettings, SourceKind
from schemas.store import BuildOptions, EpisodeRecord, FileStamp
from vla_data.common.pools import executor
from vla_data.sources.content_hash import file_stamp
from vla_data.sources.episode import SourceEpisode, SourceError
from vla_data.sources.formats import read_episodes
from vla_data.sources.instructions import InstructionIndex, resolve_instruction
from vla_data.store.errors import StoreError
from vla_data.store.history import episode_table
from vla_data.store.location import StoreLocation
from vla_data.store.ownership import Ownership, ownership_of
from vla_data.store.versions import objects_of, read_pointer


@dataclass
class ValidatedEpisode:
    """A usable source episode: its validation report, and the episode as read, identified by its content; or,
    for a stored source file whose stamp has not changed, only the content hash stored for it (not read)."""

    report: FileReport
    episode: SourceEpisode | None
    stamp: FileStamp | None = None
    known_hash: str | None = None  # recognised by its stamp: the stored episode's content hash

    @property
    def content_hash(self) -> str:
        if self.known_hash is not None:
            return self.known_hash
        assert self.episode is not None and self.episode.content_hash is not None  # read with identify=True
        return self.episode.content_hash

    @property
    def actions(self) -> np.ndarray:
        assert self.episode is not None  # only new episodes' actions are read, and those are always read
        return self.episode.actions



def read_sources(usable: list[FileReport], options: BuildOptions, settings: RecorderSettings,
                  stored: dict[Path, EpisodeRecord], assumed: Mapping[str, FileStamp]) -> list[ValidatedEpisode]:
    """Every usable source episode's actions and content hash, in order. A source file stored before whose stamp
    (size, mtime, quick hash) is unchanged is recognised without reading it; any other is read and hashed, which
    reads every frame byte once, so with a Dask scheduler the sources are read by its workers (one task per
    source; only the hashes, the actions and the frame references come back); without one, here."""
    stamps = [assumed.get(r.path) or file_stamp(r.path) for r in usable]  # assumed: as recognised before the lock
    known = [stored[resolved(r.path)].content_hash if stamp is not None and resolved(r.path) in stored
             and stored[resolved(r.path)].stamp() == stamp else None for r, stamp in zip(usable, stamps, strict=True)]
    unknown = [i for i, k in enumerate(known) if k is None]
    unvalidated = [usable[i].path for i in unknown if str(usable[i].path) in assumed]
    if unvalidated:  # recognised before the lock, but the store changed since: never read a file not validated
        raise StoreError(f"{len(unvalidated)} source(s) recognised as stored changed or left the store while this "
                         f"build started (e.g. {unvalidated[0]}): another build or edit ran; run this build again")
    read = dict(zip(unknown, _read(usable, unknown, options, settings), strict=True))
    return [ValidatedEpisode(r, read.get(i), stamps[i], known[i]) for i, r in enumerate(usable)]


def _read(usable: list[FileReport], which: list[int], options: BuildOptions, settings: RecorderSettings
          ) -> list[SourceEpisode]:
    refs = [usable[i].path for i in which]
    try:
        if options.scheduler is None:
            episodes = read_episodes(refs, settings, identify=True)
        else:
            with executor(1, options.scheduler) as pool:
                episodes = read_episodes(refs, settings, identify=True, mapper=pool.map)
    except SourceError as exc:
        raise StoreError(f"a source changed since it was validated: {exc}") from exc
    except OSError as exc:  # validated here, so it is there: the workers do not see this path
        if options.scheduler is None:
            raise
        raise StoreError(f"the Dask workers of {options.scheduler} cannot read a source ({exc}); give sources at "
                         "a path every worker sees (a shared mount, the same path on every machine)") from exc
    return episodes


@lru_cache(maxsize=1 << 16)
def resolved(path: str | Path) -> Path:
    """The absolute, symlink-free path (cached: a build compares every source with every stored path)."""
    return Path(path).resolve()


def recognised(store: StoreLocation, files: list[Path], settings: RecorderSettings, overwrite: bool
               ) -> tuple[list[FileReport], dict[str, FileStamp], list[Path]]:
    """Split a build's source files: the HDF5 files the store's current version holds with an unchanged stamp
    (their report made from the stored record, not from reading the file: they were validated when stored; the
    instruction is resolved again, since a CSV or the settings may have changed) with their stamps, and the
    files to validate. Read before the writer lock; ``read_sources`` checks the store's records again under it."""
    stored = {} if overwrite else _stored_files(store)
    known, rest, stamps = [], [], {}
    for f in files:
        record = stored.get(resolved(f))
        stamp = file_stamp(f) if record is not None and record.source_kind == SourceKind.hdf5 else None
        if stamp is not None and record is not None and record.stamp() == stamp:
            known.append((f, record))
            stamps[str(f)] = stamp
        else:
            rest.append(f)
    index = InstructionIndex.for_files([f for f, _ in known], settings.index_csv_name)
    reports = []
    for f, record in known:
        own = record.instruction if record.instruction_source == InstructionSource.file else None
        instruction, source = resolve_instruction([(own, InstructionSource.file)], f, index, settings)
        reports.append(FileReport(path=str(f), kind=SourceKind.hdf5, n_frames=record.n_frames, scenario=record.scenario,
                                  instruction=instruction, instruction_source=source))
    return reports, stamps, rest


def _stored_files(store: StoreLocation) -> dict[Path, EpisodeRecord]:
    try:
        if ownership_of(store) != Ownership.store:
            return {}
        return {resolved(r.source_path): r for r in episode_table(objects_of(store, read_pointer(store)))}
    except (OSError, ValueError):  # unreadable: nothing recognised, every file validated
        return {}
