"""The store's write path: one writer at a time, a new version written whole and committed by one write.

```python
with writing(out, sources, wait=True):            # output checks, the writer lock, killed builds' leftovers removed
    manifest = write_version(out, previous, episodes, selection, options, log_entry)
```
``episodes`` are the episodes of the new version in store order, each copied from the previous version
(``EpisodeInput.copied``) or read from a source episode (``EpisodeInput.recorded``), with its split settled.
The version is written under ``versions/<id>`` of the store (local or on object storage; ``vla_data.store.versions``),
its stats, history (``history.json``: the parent's records plus this one) and manifest written, and committed
by writing ``current.json``; the version it supersedes stays, readable as ``STORE@VERSION``, until `vla-data gc`
is given a retention rule that drops it. A failure or Ctrl-C removes the unfinished version and leaves the
previous one current; a build killed outright leaves it as a leftover that the next build (or `vla-data gc`)
removes. Object names come from ``vla_data.store.layout``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from schemas.history import History, Retention
from schemas.store import (
    ActionSelection,
    BuildLog,
    BuildLogEntry,
    BuildOptions,
    EpisodeRecord,
    Feature,
    FeatureKind,
    NormStats,
    Split,
    StoreManifest,
    StoreMarker,
)
from vla_data import __version__
from vla_data.common.ranges import episode_ranges
from vla_data.sources.episode import FrameReader
from vla_data.store.location import StoreLocation, storage_errors
from vla_data.store.layout import BUILD_LOG, HISTORY, LEASE, MANIFEST, array_path, version_prefix
from vla_data.store.ownership import Ownership, OwnershipError, check_output, claim, listing, ownership_of
from vla_data.store.shards import EpisodeSource, fill_frames, plan_shards
from vla_data.store.stats import ImageMoments, action_stats
from vla_data.store.reader import (
    FRAMES_PER_SHARD,
    DatasetStore,
    create_arrays,
    finalize,
    write_episode_ends,
    write_table,
)
from vla_data.store.history import change_between, episode_table, next_history, read_history
from vla_data.store.versions import Leftover, commit, leftovers, next_pointer, objects_of, read_pointer, remove_leftovers
from vla_data.store.writer_lock import writer_lock
from vla_data.common.refusal import Refusal


class BuildProgress(Protocol):
    """What a build reports while it writes frames (the CLI draws a bar from it)."""

    def start(self, frames: int, episodes: int) -> None: ...

    def advance(self, frames: int, episodes: int) -> None: ...


@dataclass(frozen=True)
class EpisodeInput:
    """One episode of the version being written, and where its frames and actions come from."""

    record: EpisodeRecord
    frames: dict[str, FrameReader] | None = None  # a source episode's cameras, by name; None: copied from the previous store
    actions: np.ndarray | None = None  # the kept channels, physical units (recorded episodes)
    source_frame_sizes: tuple[tuple[int, int], ...] = ()  # (H, W) of each camera's frames before resizing

    @classmethod
    def copied(cls, record: EpisodeRecord) -> EpisodeInput:
        return cls(record)

    @classmethod
    def recorded(cls, record: EpisodeRecord, frames: dict[str, FrameReader], actions: np.ndarray,
                 frame_sizes: tuple[tuple[int, int], ...]) -> EpisodeInput:
        """An episode read from a source: each camera's frames from its reader (``SourceEpisode.cameras``)."""
        return cls(record, frames, actions, frame_sizes)


@contextmanager
def writing(out: StoreLocation, sources: list[Path], wait: bool,
            on_wait: Callable[[Refusal], None] | None = None) -> Iterator[None]:
    """The block may write ``out``: it overlaps no source and holds nothing vla-data did not make (checked
    again once the writer lock is held), killed builds' leftovers are removed, and no other build writes it
    until the block ends."""
    check_output(out, sources)
    with writer_lock(out, wait, on_wait):
        check_output(out, sources)
        remove_leftovers(out)
        yield


def write_version(out: StoreLocation, previous: DatasetStore | None, episodes: list[EpisodeInput],
                  selection: ActionSelection, features: list[Feature], options: BuildOptions,
                  log_entry: BuildLogEntry, progress: BuildProgress | None = None) -> StoreManifest:
    """Write the store's next version, holding ``features``, and commit it (call inside ``writing``); see the
    module doc."""
    claim(out, StoreMarker(tool_version=__version__, created=log_entry.created))
    current = read_pointer(out)
    pointer = next_pointer(out)
    version = out.child(version_prefix(pointer.version))
    change = change_between(episode_table(objects_of(out, current)), [e.record for e in episodes])
    history = next_history(read_history(out, current), pointer.version, change)
    try:
        manifest = _write_version(version, previous, episodes, selection, features, options, log_entry, history,
                                  progress)
        with storage_errors(out, "committing the new version"):
            commit(out, pointer)
    except BaseException:
        if _current(out) != pointer.version:  # the commit did not land (a lost reply can hide that it did)
            out.delete_prefix(version_prefix(pointer.version))
        raise
    remove_leftovers(out)  # a store from before versions: its top-level objects; the superseded versions stay
    return manifest


def _current(out: StoreLocation) -> str | None:
    try:
        pointer = read_pointer(out)
    except (OSError, ValueError):
        return None
    return pointer.version if pointer is not None else None


def _write_version(version: StoreLocation, previous: DatasetStore | None, episodes: list[EpisodeInput],
                   selection: ActionSelection, features: list[Feature], options: BuildOptions,
                   log_entry: BuildLogEntry, history: History, progress: BuildProgress | None) -> StoreManifest:
    pre = options.preprocessing
    records = [e.record for e in episodes]
    n_frames = sum(r.n_frames for r in records)
    group = create_arrays(version, n_frames, features)
    cameras = [f for f in features if f.kind == FeatureKind.camera]
    action = next(f for f in features if f.kind == FeatureKind.action)

    previous_actions = np.asarray(previous.action[:], np.float32) if previous is not None else None
    previous_start = {}
    if previous is not None:
        previous_start = {h: start for h, (start, _) in zip(
            previous.episodes["content_hash"], episode_ranges(previous.episode_ends, previous.episodes["episode"]),
            strict=True)}
    actions: list[np.ndarray] = []
    frame_sources: dict[str, list[EpisodeSource]] = {c.name: [] for c in cameras}
    for e in episodes:
        r = e.record
        if e.frames is None:
            assert previous is not None and previous_actions is not None
            start = previous_start[r.content_hash]
            actions.append(previous_actions[start : start + r.n_frames])
            for c in cameras:
                frame_sources[c.name].append(EpisodeSource(r.episode, r.n_frames, None, start,
                                                           stored=previous.camera_location(c.name)))
        else:
            assert e.actions is not None
            actions.append(e.actions)
            for c in cameras:
                frame_sources[c.name].append(EpisodeSource(r.episode, r.n_frames, e.frames[c.name]))
    all_actions = np.concatenate(actions).astype(np.float32)
    group[array_path(action.name)][:] = all_actions
    write_episode_ends(group, [r.n_frames for r in records])
    tasks = [task for c in cameras
             for task in plan_shards(frame_sources[c.name], version, array_path(c.name), FRAMES_PER_SHARD, pre)]
    if progress:
        progress.start(n_frames * len(cameras), len(records))
    moments, shard_digests = fill_frames(tasks, options.workers, options.scheduler,
                                         progress.advance if progress else None)

    write_table(version, records)
    version.write(HISTORY, (history.model_dump_json(indent=2) + "\n").encode())
    log = previous.build_log() if previous is not None else BuildLog()
    log.runs.append(log_entry)
    version.write(BUILD_LOG, (log.model_dump_json(indent=2) + "\n").encode())
    manifest = StoreManifest(
        tool_version=__version__,
        created=log_entry.created,
        sources=sorted({str(Path(r.source_path).parent) for r in records}),
        preprocessing=pre,
        actions=selection,
        splits=options.splits,
        split_episodes={s: sum(r.split == s for r in records) for s in Split},
        split_frames={s: sum(r.n_frames for r in records if r.split == s) for s in Split},
        n_episodes=len(records),
        n_frames=n_frames,
        stats=train_stats(all_actions, records, moments, options),
        source_frame_sizes=_frame_sizes(previous, episodes),
        features=features,
        checksums=_checksums(version, shard_digests),
    )
    finalize(version, manifest)
    return manifest


def _checksums(version: StoreLocation, shard_digests: dict[str, str]) -> dict[str, str]:
    """sha256 of every object of the version but the manifest: the shards' as their tasks reported them, the
    rest (metadata, actions, tables: small) read back here."""
    return {key: shard_digests.get(key) or hashlib.sha256(version.read(key) or b"").hexdigest()
            for key in version.keys() if key != MANIFEST}


def _frame_sizes(previous: DatasetStore | None, episodes: list[EpisodeInput]) -> list[str]:
    """The source frame sizes (HxW) the store's episodes came from: the previous store's and the new ones'."""
    sizes = set(previous.manifest.source_frame_sizes) if previous is not None else set()
    sizes |= {f"{h}x{w}" for e in episodes for h, w in e.source_frame_sizes}
    return sorted(sizes)


def train_stats(actions: np.ndarray, records: list[EpisodeRecord], moments: dict[int, ImageMoments],
                options: BuildOptions) -> NormStats:
    """Exact stats over the train split's frames: every action channel, and the RGB moments of the frames (of
    every camera together)."""
    train = np.repeat([r.split == Split.train for r in records], [r.n_frames for r in records])
    images = ImageMoments()
    for r in records:
        if r.split == Split.train:
            images.merge(moments[r.episode])
    mean, std = images.mean_std()
    return NormStats(mode=options.norm_mode, action=action_stats(actions[train]), image_mean=mean, image_std=std)


def collect_garbage(out: StoreLocation, wait: bool, break_lease: bool = False,
                    on_wait: Callable[[Refusal], None] | None = None, retention: Retention | None = None,
                    dry_run: bool = False) -> list[Leftover]:
    """`vla-data gc`: remove what killed builds left in a store (``versions.leftovers``) and, with ``retention``,
    the data of the committed versions it does not keep (their records stay in the history), holding the
    store's writer lock so that no build is writing them. ``break_lease``: first delete the lease a build on
    object storage left (the user's word that it no longer runs). ``dry_run``: remove nothing. What was (or
    would be) removed."""
    with storage_errors(out, "collecting garbage"):
        if ownership_of(out) not in (Ownership.store, Ownership.incomplete):
            raise OwnershipError(f"{out} is not a vla-data store ({listing(out) if out.children() else 'nothing there'}); "
                                 "vla-data removes only what it made")
        if dry_run:
            return leftovers(out, retention)
        if break_lease and out.url is not None:
            out.delete(LEASE)
        with writer_lock(out, wait, on_wait):
            return remove_leftovers(out, retention)
