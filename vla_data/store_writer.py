"""The store's write path: one writer at a time, a new version written in staging and published whole.

```python
with writing(out, sources, wait=True):            # output checks, the writer lock, crash recovery
    manifest = write_version(out, previous, episodes, selection, options, log_entry)
```
``episodes`` are the episodes of the new version in store order, each copied from the previous store
(``EpisodeInput.copied``) or read from a recorder file (``EpisodeInput.recorded``), with its split settled.
The version is written into ``.NAME.staging-PID`` (claimed by vla-data's marker first), its stats and
manifest computed, and published by renames; a failure or Ctrl-C removes the staging folder and leaves the
previous store as it was. Only this module and ``vla_data.store`` spell paths inside a store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

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
from vla_data.bags import FrameRefs
from vla_data.location import StoreLocation
from vla_data.ownership import check_output, remove_ours
from vla_data.shards import EpisodeSource, fill_frames, plan_shards
from vla_data.stats import ImageMoments, action_stats
from vla_data.store import (
    BUILD_LOG,
    FRAMES_PER_SHARD,
    DatasetStore,
    array_path,
    create_arrays,
    finalize,
    publish,
    recover,
    staging_path,
    stored_checksums,
    write_episode_ends,
    write_table,
)
from vla_data.writer_lock import writer_lock


class BuildProgress(Protocol):
    """What a build reports while it writes frames (the CLI draws a bar from it)."""

    def start(self, frames: int, episodes: int) -> None: ...

    def advance(self, frames: int, episodes: int) -> None: ...


@dataclass(frozen=True)
class EpisodeInput:
    """One episode of the version being written, and where its frames and actions come from."""

    record: EpisodeRecord
    recorder_file: Path | None = None  # None: copied from the previous store
    actions: np.ndarray | None = None  # the kept channels, physical units (recorded episodes)
    source_frame_sizes: tuple[tuple[int, int], ...] = ()  # (H, W) of each camera's frames before resizing
    bag_frames: dict[str, FrameRefs] | None = None  # a bag's: each camera's frame messages, by camera name

    @classmethod
    def copied(cls, record: EpisodeRecord) -> EpisodeInput:
        return cls(record)

    @classmethod
    def recorded(cls, record: EpisodeRecord, path: Path, actions: np.ndarray, frame_sizes: tuple[tuple[int, int], ...],
                 bag_frames: dict[str, FrameRefs] | None = None) -> EpisodeInput:
        """An episode read from a recorder file (each camera's frames from the dataset its feature names) or a
        bag (each camera's frames from the messages ``bag_frames`` names)."""
        return cls(record, path, actions, frame_sizes, bag_frames)


@contextmanager
def writing(out: Path, sources: list[Path], wait: bool, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """The block may write ``out``: it overlaps no source and holds nothing vla-data did not make (checked
    again once the writer lock is held), a crashed build's leftovers are recovered, and no other build
    writes it until the block ends."""
    check_output(out, sources)
    with writer_lock(out, wait, on_wait):
        recover(out)
        check_output(out, sources)
        yield


def write_version(out: Path, previous: DatasetStore | None, episodes: list[EpisodeInput], selection: ActionSelection,
                  features: list[Feature], options: BuildOptions, log_entry: BuildLogEntry,
                  progress: BuildProgress | None = None) -> StoreManifest:
    """Write the store's next version, holding ``features``, and publish it (call inside ``writing``); see the
    module doc."""
    staging = staging_path(out, os.getpid())
    try:
        manifest = _write_staging(staging, previous, episodes, selection, features, options, log_entry, progress)
        publish(staging, out)
    except BaseException:
        if staging.exists():
            remove_ours(staging)
        raise
    return manifest


def _write_staging(staging: Path, previous: DatasetStore | None, episodes: list[EpisodeInput],
                   selection: ActionSelection, features: list[Feature], options: BuildOptions,
                   log_entry: BuildLogEntry, progress: BuildProgress | None) -> StoreManifest:
    pre = options.preprocessing
    records = [e.record for e in episodes]
    n_frames = sum(r.n_frames for r in records)
    marker = StoreMarker(tool_version=__version__, created=log_entry.created)
    group = create_arrays(staging, n_frames, features, marker)
    cameras = [f for f in features if f.kind == FeatureKind.camera]
    action = next(f for f in features if f.kind == FeatureKind.action)

    previous_actions = np.asarray(previous.action[:], np.float32) if previous is not None else None
    previous_start = {}
    if previous is not None:
        ends = previous.episode_ends
        previous_start = {h: int(ends[ep]) - int(n) for h, ep, n in zip(
            previous.episodes["content_hash"], previous.episodes["episode"], previous.episodes["n_frames"], strict=True)}
    actions: list[np.ndarray] = []
    frame_sources: dict[str, list[EpisodeSource]] = {c.name: [] for c in cameras}
    for e in episodes:
        r = e.record
        if e.recorder_file is None:
            assert previous is not None and previous_actions is not None
            start = previous_start[r.content_hash]
            actions.append(previous_actions[start : start + r.n_frames])
            for c in cameras:
                frame_sources[c.name].append(EpisodeSource(r.episode, r.n_frames, previous.camera_location(c.name).path, None, start))
        else:
            assert e.actions is not None
            actions.append(e.actions)
            for c in cameras:
                assert c.color_order is not None
                frame_sources[c.name].append(EpisodeSource(
                    r.episode, r.n_frames, e.recorder_file, c.source, color_order=c.color_order,
                    bag_frames=e.bag_frames[c.name] if e.bag_frames is not None else None))
    all_actions = np.concatenate(actions).astype(np.float32)
    group[array_path(action)][:] = all_actions
    write_episode_ends(group, [r.n_frames for r in records])
    tasks = [task for c in cameras
             for task in plan_shards(frame_sources[c.name], staging / array_path(c), FRAMES_PER_SHARD, pre)]
    if progress:
        progress.start(n_frames * len(cameras), len(records))
    moments = fill_frames(tasks, options.workers, progress.advance if progress else None)

    write_table(staging, records)
    log = previous.build_log() if previous is not None else BuildLog()
    log.runs.append(log_entry)
    (staging / BUILD_LOG).write_text(log.model_dump_json(indent=2) + "\n")
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
        checksums=stored_checksums(StoreLocation(path=staging)),
    )
    finalize(staging, manifest)
    return manifest


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
