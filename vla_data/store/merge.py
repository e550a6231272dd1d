"""`vla-data merge A B -o C`: one new store holding the episodes of several stores (each at its current version,
or the version ``STORE@REF`` names), each episode in the split it had. The stores must agree on what an
episode is (preprocessing, cameras, action channels); otherwise the merge is refused naming each difference.
An episode whose content another store already gave is left out and listed. Frames are copied byte for byte
(each shard verified first) into one segment of C, and C's history names every store and version it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from schemas.history import Provenance
from schemas.store import BuildLog, BuildLogEntry, BuildOptions, Duplicate, StoreManifest
from vla_data import __version__
from vla_data.common.refusal import Refusal
from vla_data.store.errors import StoreError
from vla_data.store.location import StoreLocation, storage_errors
from vla_data.store.ownership import Ownership, ownership_of
from vla_data.store.reader import DatasetStore, open_store
from vla_data.store.versions import read_pointer
from vla_data.store.writer import BuildProgress, EpisodeInput, write_version, writing


def differences(first: DatasetStore, other: DatasetStore) -> list[str]:
    """What makes ``other``'s episodes unlike ``first``'s, one line each (empty: they can be merged)."""
    a, b = first.manifest, other.manifest
    found = []
    if a.preprocessing != b.preprocessing:
        found.append(f"preprocessing {a.preprocessing.model_dump(mode='json')} vs {b.preprocessing.model_dump(mode='json')}")
    cameras = [", ".join(f"{f.name} {'x'.join(map(str, f.shape))}" for f in m.cameras) for m in (a, b)]
    if cameras[0] != cameras[1]:
        found.append(f"cameras {cameras[0]} vs {cameras[1]}")
    if (a.actions.channels, a.actions.names) != (b.actions.channels, b.actions.names):
        found.append(f"action channels {a.actions.channels} {list(a.actions.names)} vs {b.actions.channels} "
                     f"{list(b.actions.names)}")
    if a.stats.mode != b.stats.mode:
        found.append(f"normalisation {a.stats.mode.value} vs {b.stats.mode.value}")
    return found


def merge(addresses: list[str], out: Path | str, workers: int = 1, progress: BuildProgress | None = None,
          wait: bool = True, on_wait: Callable[[Refusal], None] | None = None) -> tuple[StoreManifest, list[Duplicate]]:
    """Merge the stores at ``addresses`` into a new store at ``out``; its manifest and the episodes left out
    as content duplicates. Raises ``StoreError`` with nothing written."""
    if len(addresses) < 2:
        raise StoreError("a merge takes two or more stores")
    stores = [open_store(a) for a in addresses]
    location = StoreLocation.of(out)
    if location.path is not None:
        location = StoreLocation(path=location.path.resolve())
    inputs = {str(s.location.path.resolve()) if s.location.path else str(s.location) for s in stores}
    if str(location) in inputs:
        raise StoreError(f"{out} is one of the stores being merged: give a new output")
    if ownership_of(location) not in (Ownership.absent, Ownership.empty, Ownership.incomplete):
        raise _exists(out)  # incomplete: a killed merge or first build, whose leftovers the writer removes
    problems = [f"{addresses[i]}: {line}" for i, s in enumerate(stores[1:], 1) for line in differences(stores[0], s)]
    if problems:
        raise StoreError(f"the stores do not hold the same kind of episode, so they cannot be merged: "
                         f"{'; '.join(problems)} (against {addresses[0]}); rebuild one from its sources with the "
                         "other's options")
    episodes, duplicates, seen = [], [], {}
    for store in stores:
        sizes = tuple(tuple(int(v) for v in s.split("x")) for s in store.manifest.source_frame_sizes)
        for record in store.records():
            if record.content_hash in seen:
                duplicates.append(Duplicate(source_path=record.source_path, same_as=seen[record.content_hash]))
                continue
            seen[record.content_hash] = record.source_path
            fresh = record.model_copy(update={"episode": len(episodes), "segment": "", "segment_start": None})
            episodes.append(EpisodeInput(fresh, None, None, sizes))  # type: ignore[arg-type]
    m = stores[0].manifest
    options = BuildOptions(preprocessing=m.preprocessing, splits=m.splits, norm_mode=m.stats.mode, workers=workers)
    entry = BuildLogEntry(tool_version=__version__, created=datetime.now(UTC).isoformat(timespec="seconds"),
                          added=[e.record.source_path for e in episodes], kept=0, duplicates=duplicates)
    merged_from = [Provenance(store=str(s.location.path.resolve()) if s.location.path else str(s.location),
                              version=s.version) for s in stores]
    with storage_errors(location, "writing the merged store"), writing(location, [], wait, on_wait):
        if read_pointer(location) is not None:  # another merge or build made a store there while this one waited
            raise _exists(out)
        manifest = write_version(location, None, episodes, m.actions, m.features, options,
                                 BuildLog(runs=[entry]), progress, others=stores, merged_from=merged_from)
    return manifest, duplicates


def _exists(out: Path | str) -> StoreError:
    return StoreError(f"{out} exists already: a merge writes a new store; give a path where nothing is")
