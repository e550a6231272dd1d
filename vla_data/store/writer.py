"""The store's write path: one writer at a time, a new version committed by one write, frames never copied.

```python
with writing(out, sources, wait=True):            # output checks, the writer lock, killed builds' leftovers removed
    manifest = write_version(out, previous, episodes, selection, features, options, log)
```
``episodes`` are the episodes of the new version in store order, each carried from the previous version
(``EpisodeInput.copied``) or read from a source episode (``EpisodeInput.recorded``), with its split settled.
A carried episode keeps its place in the segment that holds it: nothing of it is read or written again. The
new episodes' frames and actions go into one new segment (``segments/<version id>``, its ``segment.json``
last), the version's small tables (episode table, history, build log, manifest with the stats) under
``versions/<id>``, and ``current.json`` is written last: the commit. An edit is the same call with every
episode carried (0 frame bytes). The version it supersedes stays, readable as ``STORE@VERSION``, until
`vla-data gc` is given a retention rule that drops it. A failure or Ctrl-C removes the unfinished version
and segment and leaves the previous version current; a build killed outright leaves them as leftovers that
the next build (or `vla-data gc`) removes. Object names come from ``vla_data.store.layout``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import ZstdCodec

from schemas.history import History, Provenance, Retention
from schemas.segments import SegmentEpisode, SegmentRecord
from schemas.store import (
    ActionSelection,
    BuildLog,
    BuildOptions,
    EpisodeRecord,
    Feature,
    FeatureKind,
    NormMode,
    NormStats,
    Split,
    StoreManifest,
    StoreMarker,
)
from vla_data import __version__
from vla_data.common.ranges import ends_of
from vla_data.sources.episode import FrameReader
from vla_data.store.location import StoreLocation, storage_errors
from vla_data.store.errors import StoreError
from vla_data.store.layout import (
    BUILD_LOG,
    EPISODE_ENDS,
    EPISODES,
    HISTORY,
    LEASE,
    MANIFEST,
    SEGMENT,
    array_path,
    segment_prefix,
    version_prefix,
)
from vla_data.store.ownership import Ownership, OwnershipError, check_output, claim, listing, ownership_of
from vla_data.store.shards import EpisodeSource, fill_frames, plan_shards
from vla_data.store.stats import ImageMoments, action_stats
from vla_data.store.reader import FRAMES_PER_SHARD, DatasetStore, stored_checksums
from vla_data.store.spans import ArraySpan
from vla_data.store.history import change_between, episode_table, next_history, now_iso, read_history
from vla_data.store.versions import Leftover, commit, leftovers, next_pointer, objects_of, read_pointer, remove_leftovers
from vla_data.store.writer_lock import writer_lock
from vla_data.common.refusal import Fix, Refusal


ZSTD = ZstdCodec(level=3)


def create_arrays(root: StoreLocation, n_frames: int, features: list[Feature]) -> zarr.Group:
    """A new version's group with an empty array per feature for ``n_frames``: cameras one frame per inner chunk,
    ``FRAMES_PER_SHARD`` frames per shard; actions in one chunk; zstd."""
    group = zarr.open_group(store=root.zarr_store(writable=True), mode="w-", zarr_format=3)
    for f in features:
        if f.kind == FeatureKind.camera:
            group.create_array(array_path(f.name), shape=(n_frames, *f.shape), chunks=(1, *f.shape),
                               shards=(FRAMES_PER_SHARD, *f.shape), dtype=f.dtype, compressors=ZSTD,
                               dimension_names=("frame", "height", "width", "channel"))
        else:
            group.create_array(array_path(f.name), shape=(n_frames, *f.shape), chunks=(max(1, min(n_frames, 65536)), *f.shape),
                               dtype=f.dtype, compressors=ZSTD, dimension_names=("frame", "action"))
    return group


def write_table(root: StoreLocation, records: list[EpisodeRecord]) -> None:
    table = pd.DataFrame([r.model_dump(mode="json") for r in records])
    # stamps in ns stay whole numbers (an empty cell where an episode has none), not floats in e-notation
    whole = {c: "Int64" for c in ("start_ns", "stop_ns", "segment_start", "source_size", "source_mtime_ns")}
    root.write(EPISODES, table.astype(whole).to_csv(index=False).encode())


def finalize(root: StoreLocation, manifest: StoreManifest) -> None:
    """Write the version's manifest, last of its objects."""
    root.write(MANIFEST, (manifest.model_dump_json(indent=2) + "\n").encode())


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
                  log: BuildLog, progress: BuildProgress | None = None,
                  others: Sequence[DatasetStore] = (), merged_from: Sequence[Provenance] = ()) -> StoreManifest:
    """Write the store's next version, holding ``features``, and commit it (call inside ``writing``); see the
    module doc. ``log``: the version's build log (the previous one, with this build's entry or an edit's
    removals). ``others``: stores that carried episodes without a segment here are copied from, and
    ``merged_from`` what the history says of them (a merge)."""
    claim(out, StoreMarker(tool_version=__version__, created=now_iso()))
    if previous is not None:
        check_tables(previous)
    current = read_pointer(out)
    pointer = next_pointer(out)
    change = change_between(episode_table(objects_of(out, current)), [e.record for e in episodes])
    change.merged_from = list(merged_from)
    history = next_history(read_history(out, current), pointer.version, change)
    try:
        manifest = _write_version(out, pointer.version, Carried(previous, others), episodes, selection, features,
                                  options, log, history, progress)
        with storage_errors(out, "committing the new version"):
            commit(out, pointer)
    except BaseException:
        if _current(out) != pointer.version:  # the commit did not land (a lost reply can hide that it did)
            _remove_unfinished(out, pointer.version)
        raise
    remove_leftovers(out)  # a store from before versions: its top-level objects; the superseded versions stay
    return manifest


STAMP_FIELDS = {"source_size", "source_mtime_ns", "source_quick"}


def _remove_unfinished(out: StoreLocation, version: str, tries: int = 20) -> None:
    """Remove a version and segment that were never committed. A write zarr's I/O thread still has in flight
    when Ctrl-C lands can add a file while they are removed: try again shortly; what still stays is a leftover
    the next build or `vla-data gc` removes (the original error is what the user hears)."""
    for attempt in range(tries):
        try:
            out.delete_prefix(version_prefix(version))
            out.delete_prefix(segment_prefix(version))
            return
        except OSError:
            if attempt == tries - 1:
                return
            time.sleep(0.05)


def unchanged(previous: DatasetStore | None, episodes: list[EpisodeInput]) -> bool:
    """The version would be the previous one again: every episode carried from a segment, each as stored (a
    source file's new stamp alone, e.g. after a copy that kept its content, is no change)."""
    return (previous is not None and bool(previous.manifest.segments) and all(e.frames is None for e in episodes)
            and [e.record.model_dump(exclude=STAMP_FIELDS) for e in episodes]
            == [r.model_dump(exclude=STAMP_FIELDS) for r in previous.records()])


def check_tables(previous: DatasetStore) -> None:
    """The version a build or an edit starts from holds its tables as written: a hand-edited or damaged table is
    refused, never carried into a new version with a new checksum."""
    for key in (BUILD_LOG, HISTORY):  # the episode table was checked when the version was opened (open_store);
        digest = previous.manifest.checksums.get(key)  # frames and actions are checked where read or copied
        if digest is None:  # a version written before histories
            continue
        raw = previous.objects.read(key)
        if raw is None or hashlib.sha256(raw).hexdigest() != digest:
            raise StoreError(f"{previous.objects}/{key}: {'missing' if raw is None else 'checksum mismatch'}: the "
                             "version's table was changed since it was written; restore it, or go on from an "
                             "undamaged version", Fix({"verify": True}, "to name every damaged object",
                                                      command=f"info {previous.location}"))


def _current(out: StoreLocation) -> str | None:
    try:
        pointer = read_pointer(out)
    except (OSError, ValueError):
        return None
    return pointer.version if pointer is not None else None


def _write_version(out: StoreLocation, version_id: str, carried: Carried, episodes: list[EpisodeInput],
                   selection: ActionSelection, features: list[Feature], options: BuildOptions,
                   log: BuildLog, history: History, progress: BuildProgress | None) -> StoreManifest:
    records = [e.record for e in episodes]
    previous = carried.previous
    fresh = [i for i, e in enumerate(episodes) if e.frames is not None or not e.record.segment]
    images: dict[str, ImageMoments] = {}
    actions: dict[str, np.ndarray] = {}
    if fresh:
        records, images, actions = _write_segment(out.child(segment_prefix(version_id)), version_id, episodes,
                                                  fresh, carried, features, options, progress)
    segments = {r.segment for r in records}
    digests = {s: carried.segment_digest(s) for s in segments if s != version_id}
    if version_id in segments:
        digests[version_id] = hashlib.sha256(out.child(segment_prefix(version_id)).read(SEGMENT) or b"").hexdigest()
    train = [r for r in records if r.split == Split.train]
    train_actions = [actions[r.content_hash] if r.content_hash in actions else carried.actions(r) for r in train]
    train_images = [images[r.content_hash] if r.content_hash in images else carried.image(r) for r in train]

    version = out.child(version_prefix(version_id))
    write_table(version, records)
    version.write(HISTORY, (history.model_dump_json(indent=2) + "\n").encode())
    version.write(BUILD_LOG, (log.model_dump_json(indent=2) + "\n").encode())
    manifest = StoreManifest(
        tool_version=__version__,
        created=now_iso(),
        sources=sorted({str(Path(r.source_path).parent) for r in records}),
        preprocessing=options.preprocessing,
        actions=selection,
        splits=options.splits,
        split_episodes={s: sum(r.split == s for r in records) for s in Split},
        split_frames={s: sum(r.n_frames for r in records if r.split == s) for s in Split},
        n_episodes=len(records),
        n_frames=sum(r.n_frames for r in records),
        stats=train_stats(train_actions, train_images, options.norm_mode),
        source_frame_sizes=_frame_sizes(previous, episodes),
        features=features,
        checksums=stored_checksums(version),
        segments=dict(sorted(digests.items())),
    )
    finalize(version, manifest)
    return manifest


class Carried:
    """What the previous version (or, for a merge, another store) holds of an episode carried into the new one:
    its segment, actions and image sums, by content hash."""

    def __init__(self, previous: DatasetStore | None, others: Sequence[DatasetStore] = ()) -> None:
        self.previous = previous
        self.position: dict[str, tuple[DatasetStore, int]] = {}
        for store in reversed([s for s in (previous, *others) if s is not None]):  # the first store wins
            self.position |= {h: (store, i) for i, h in enumerate(store.episodes["content_hash"])}

    def store_of(self, record: EpisodeRecord) -> DatasetStore:
        return self.position[record.content_hash][0]

    def spans(self, name: str, record: EpisodeRecord) -> ArraySpan:
        store, i = self.position[record.content_hash]
        return store.spans(name, [i])[0]

    def actions(self, record: EpisodeRecord) -> np.ndarray:
        store, i = self.position[record.content_hash]
        a, b = store.episode_range(i)
        return store.action[a:b]

    def image(self, record: EpisodeRecord) -> ImageMoments:
        assert self.previous is not None
        return ImageMoments.of(self.previous.segment_episode(record.segment, record.content_hash).image)

    def segment_digest(self, segment: str) -> str:
        assert self.previous is not None
        self.previous.segment(segment)  # checked against the previous manifest's sha256 of it
        return self.previous.manifest.segments[segment]


def _write_segment(root: StoreLocation, segment: str, episodes: list[EpisodeInput], fresh: list[int],
                   carried: Carried, features: list[Feature], options: BuildOptions,
                   progress: BuildProgress | None) -> tuple[list[EpisodeRecord], dict[str, ImageMoments], dict[str, np.ndarray]]:
    """Write the frames and actions of episodes ``fresh`` (new ones read from their sources; ones copied from a
    version of format 1 or 2, verified as they are read) into a new segment, its record last. The records of
    every episode (the fresh ones placed in the segment), and the fresh ones' image sums and actions by hash."""
    records = [e.record for e in episodes]
    cameras = [f for f in features if f.kind == FeatureKind.camera]
    action = next(f for f in features if f.kind == FeatureKind.action)
    frame_sources: dict[str, list[EpisodeSource]] = {c.name: [] for c in cameras}
    actions: dict[str, np.ndarray] = {}
    cursor = 0
    for i in fresh:
        e, r = episodes[i], records[i]
        if e.frames is None:  # from a version holding its own arrays, or another store: copied, verified first
            actions[r.content_hash] = carried.actions(r)
            for c in cameras:
                span, reader = carried.spans(array_path(c.name), r), carried.store_of(r).reader
                reader.verifier.check(span, reader.array(span), str(r.episode))
                frame_sources[c.name].append(EpisodeSource(i, r.n_frames, None, span.start,
                                                           stored=span.root.child(span.name)))
        else:
            assert e.actions is not None
            actions[r.content_hash] = np.asarray(e.actions, np.float32)
            for c in cameras:
                frame_sources[c.name].append(EpisodeSource(i, r.n_frames, e.frames[c.name]))
        records[i] = r.model_copy(update={"segment": segment, "segment_start": cursor})
        cursor += r.n_frames
    group = create_arrays(root, cursor, features)
    group[array_path(action.name)][:] = np.concatenate([actions[records[i].content_hash] for i in fresh])
    ends = ends_of([records[i].n_frames for i in fresh])  # a plain zarr reader finds the episodes without vla-data
    group.create_array(EPISODE_ENDS, data=ends, chunks=(max(1, len(ends)),), compressors=ZSTD)
    tasks = [task for c in cameras
             for task in plan_shards(frame_sources[c.name], root, array_path(c.name), FRAMES_PER_SHARD,
                                     options.preprocessing)]
    if progress:
        progress.start(cursor * len(cameras), len(fresh))
    moments, shard_digests = fill_frames(tasks, options.workers, options.scheduler,
                                         progress.advance if progress else None)
    images = {records[i].content_hash: moments[i] for i in fresh}
    record = SegmentRecord(
        segment=segment, tool_version=__version__, created=now_iso(), n_frames=cursor, features=features,
        episodes=[SegmentEpisode(content_hash=records[i].content_hash, start=records[i].segment_start or 0,
                                 n_frames=records[i].n_frames, image=moments[i].sums()) for i in fresh],
        checksums={key: shard_digests.get(key) or hashlib.sha256(root.read(key) or b"").hexdigest()
                   for key in root.keys() if key != SEGMENT})
    root.write(SEGMENT, (record.model_dump_json(indent=2) + "\n").encode())
    return records, images, actions


def _frame_sizes(previous: DatasetStore | None, episodes: list[EpisodeInput]) -> list[str]:
    """The source frame sizes (HxW) the store's episodes came from: the previous store's and the new ones'."""
    sizes = set(previous.manifest.source_frame_sizes) if previous is not None else set()
    sizes |= {f"{h}x{w}" for e in episodes for h, w in e.source_frame_sizes}
    return sorted(sizes)


def train_stats(actions: list[np.ndarray], images: list[ImageMoments], mode: NormMode) -> NormStats:
    """Exact stats over the train split's frames: every action channel, and the RGB moments of the frames (of
    every camera together), from each train episode's actions and image sums."""
    total = ImageMoments()
    for moments in images:
        total.merge(moments)
    mean, std = total.mean_std()
    return NormStats(mode=mode, action=action_stats(np.concatenate(actions)), image_mean=mean, image_std=std)


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
