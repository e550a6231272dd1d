"""The source formats vla-data reads, and the operations that work for all of them: finding sources in folders,
telling which format a path is, reading episodes.

A new format is one module under ``vla_data/sources/`` giving a ``SourceFormat`` (listed in ``FORMATS``) plus its
validation rules (``vla_data.validation``); nothing else names a format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from schemas import RecorderSettings
from vla_data.sources.bag_episodes import BAGS
from vla_data.sources.episode import SourceEpisode, SourceError, SourceFormat
from vla_data.sources.hdf5 import HDF5
from vla_data.sources.lerobot import LEROBOT

# In the order they are asked: a bag folder is a bag before anything else, then a LeRobot folder; HDF5 takes any
# other file given (validation then says whether it is HDF5 at all).
FORMATS: tuple[SourceFormat, ...] = (BAGS, LEROBOT, HDF5)

Mapper = Callable[..., Iterator]  # ``map`` or an executor's ``map``: where sources are read


def format_of(ref: str | Path) -> tuple[SourceFormat, Path]:
    """The format of the episode ``ref`` names (a file, a bag, or BAG#k of a cut bag) and the source holding it."""
    for fmt in FORMATS:
        source = fmt.source_of(str(ref))
        if source is not None:
            return fmt, source
    raise SourceError(f"{ref}: not a source vla-data reads")  # unreachable while HDF5 is the fallback


def source_exists(ref: str | Path) -> bool:
    """The source holding ``ref`` (BAG#k: the bag) exists."""
    return format_of(ref)[1].exists()


def _claimed(path: Path) -> bool:
    return any(fmt.claims(path) for fmt in FORMATS)


def find_sources(paths: Iterable[Path]) -> list[Path]:
    """The sources named by ``paths``: files and sources as given, other folders searched recursively for every
    format's sources (a source that is a folder, such as a bag, is not searched inside), sorted, unique."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.is_dir() or _claimed(path):
            found[path] = None
            continue
        for folder, subfolders, names in os.walk(path):
            here = Path(folder)
            sources = sorted(d for d in subfolders if _claimed(here / d))
            found.update(dict.fromkeys(here / d for d in sources))
            subfolders[:] = sorted(d for d in subfolders if d not in sources)
            found.update(dict.fromkeys(here / n for n in sorted(names) if _claimed(here / n)))
    return sorted(found)


def common_root(paths: Iterable[Path]) -> str:
    """The folder that the given files and folders share."""
    return os.path.commonpath([str(p.resolve().parent if p.is_file() else p.resolve()) for p in paths])


def read_source(source: Path, settings: RecorderSettings, identify: bool) -> list[SourceEpisode]:
    """Every episode of one source (a module-level function: a process pool or a Dask worker runs it)."""
    return format_of(source)[0].read(source, settings, identify)


def read_episodes(refs: list[str], settings: RecorderSettings, identify: bool, mapper: Mapper = map
                  ) -> list[SourceEpisode]:
    """The episodes ``refs`` name, in order; each source is read once however many of its episodes are asked
    (a cut bag gives several), by ``mapper`` (``map``, or an executor's ``map``: on a Dask cluster the workers
    read). ``identify``: with content hashes. ``SourceError`` for an episode its source no longer gives."""
    holder = {ref: format_of(ref)[1] for ref in refs}
    sources = list(dict.fromkeys(holder.values()))
    read = mapper(read_source, sources, [settings] * len(sources), [identify] * len(sources))
    by_ref = {episode.ref: episode for episodes in read for episode in episodes}
    missing = [ref for ref in refs if ref not in by_ref]
    if missing:
        given = ", ".join(list(by_ref)[:3]) + (f" ... ({len(by_ref)})" if len(by_ref) > 3 else "")
        raise SourceError(f"{missing[0]}: no such episode in {holder[missing[0]]} (it gives {given or 'none'})")
    return [by_ref[ref] for ref in refs]


def read_episode(ref: str | Path, settings: RecorderSettings, identify: bool = False) -> SourceEpisode:
    """The one episode ``ref`` names."""
    return read_episodes([str(ref)], settings, identify)[0]
