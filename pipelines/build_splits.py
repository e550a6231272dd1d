"""The build-splits job: validated recorder episodes -> one zarr store with splits and train-only stats.

Sources are validated first (default pass); the store is built in a staging folder and published by
renames (``vla_data.store.publish``). Re-running on the same output adds only episodes whose content is
new, keeps every existing episode's frames and split, and recomputes the stats.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas import FileReport, RecorderSettings, ValidateOptions, ValidationReport, default_action_names
from schemas.store import (
    ActionSelection,
    BuildLog,
    BuildLogEntry,
    BuildOptions,
    EpisodeRecord,
    NormStats,
    SkippedEpisode,
    Split,
    StoreManifest,
    Stratify,
)
from vla_data import __version__
from vla_data.recorder import common_root, episode_files, fingerprint, header, open_episode, stored_frame_bytes
from vla_data.resize import resize_frames
from vla_data.splits import assign_splits
from vla_data.stats import ImageMoments, action_stats
from vla_data.store import (
    BUILD_LOG,
    DatasetStore,
    StoreError,
    create_arrays,
    finalize,
    object_checksums,
    open_store,
    publish,
    recover,
    write_episode_ends,
    write_table,
)
from vla_data.validation import validate


class BuildRefused(Exception):
    """The sources have errors (and --skip-invalid was not given): nothing was written."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(f"{report.n_errors} source file(s) have errors")
        self.report = report


@dataclass
class Source:
    """A usable source episode, identified by its content."""

    report: FileReport
    content_hash: str
    actions: np.ndarray  # all recorder channels, physical units


def select_channels(usable: list[FileReport], options: BuildOptions, action_dim: int) -> ActionSelection:
    if options.action_channels == "auto":
        lo = np.min([r.action_min for r in usable], axis=0)
        hi = np.max([r.action_max for r in usable], axis=0)
        channels = [c for c in range(action_dim) if lo[c] != hi[c]]
        if not channels:
            raise StoreError("every action channel is constant across the sources; nothing to learn")
    else:
        channels = list(options.action_channels)
        bad = [c for c in channels if not 0 <= c < action_dim]
        if bad:
            raise StoreError(f"--action-channels {bad} out of range: the recorder writes channels 0..{action_dim - 1}")
    names = options.action_names or [default_action_names(action_dim)[c] for c in channels]
    try:
        return ActionSelection(channels=channels, names=names)
    except ValueError as exc:
        raise StoreError(f"action channels {channels} and names {names} do not fit: {exc}") from exc


def _read_source(report: FileReport, settings: RecorderSettings) -> Source:
    path = Path(report.path)
    with open_episode(path) as f:
        frames_ds, actions = f[settings.frames_key], np.asarray(f[settings.actions_key][()], np.float32)
        digest = fingerprint(actions, header(frames_ds, settings.frames_key), stored_frame_bytes(frames_ds))
    return Source(report=report, content_hash=digest, actions=actions)


def _load_previous(out: Path, options: BuildOptions) -> DatasetStore | None:
    recover(out)
    if not out.exists():
        return None
    try:
        previous = open_store(out)
    except StoreError:
        if options.overwrite:
            return None
        raise
    if options.overwrite:
        return None
    m = previous.manifest
    if m.preprocessing != options.preprocessing:
        raise StoreError(
            f"{out} was built with {m.preprocessing.model_dump(mode='json')}, not "
            f"{options.preprocessing.model_dump(mode='json')}; pass --overwrite to rebuild it"
        )
    return previous


def build_splits(
    sources: list[Path],
    out: Path,
    options: BuildOptions,
    settings: RecorderSettings,
    progress: Callable[[int], None] | None = None,
) -> StoreManifest:
    files = episode_files(sources)
    report = validate(files, settings, ValidateOptions(), root=common_root(sources))
    if report.n_errors and not options.skip_invalid:
        raise BuildRefused(report)
    skipped = [
        SkippedEpisode(
            source_path=r.path,
            reason="; ".join(f"{f.code.value}: {f.message}" for f in r.findings if f.severity.value == "error"),
        )
        for r in report.files
        if not r.ok
    ]
    usable = [r for r in report.files if r.ok]
    if not usable:
        raise StoreError("no usable source episodes")
    previous = _load_previous(out, options)
    selection = previous.manifest.actions if previous is not None else select_channels(usable, options, settings.action_dim)
    if previous is not None and options.action_channels != "auto" and list(options.action_channels) != selection.channels:
        raise StoreError(f"{out} keeps channels {selection.channels}; pass --overwrite to change them")

    stored = set(previous.episodes["content_hash"]) if previous is not None else set()
    new: list[Source] = []
    new_hashes: set[str] = set()
    duplicates: list[str] = []
    for r in usable:
        source = _read_source(r, settings)
        if source.content_hash in stored:
            continue  # already in the store: kept as it is
        if source.content_hash in new_hashes:
            duplicates.append(r.path)
            continue
        new_hashes.add(source.content_hash)
        new.append(source)

    kept = (
        [EpisodeRecord.model_validate(row) for row in previous.episodes.to_dict("records")] if previous else []
    )
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}")
    try:
        manifest = _write_staging(staging, previous, new, kept, selection, skipped, duplicates, options, settings, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, out)
    return manifest


def _write_staging(
    staging: Path,
    previous: DatasetStore | None,
    new: list[Source],
    kept: list[EpisodeRecord],
    selection: ActionSelection,
    skipped: list[SkippedEpisode],
    duplicates: list[str],
    options: BuildOptions,
    settings: RecorderSettings,
    progress: Callable[[int], None] | None,
) -> StoreManifest:
    pre = options.preprocessing
    n_kept_frames = sum(e.n_frames for e in kept)
    n_frames = n_kept_frames + sum(len(s.actions) for s in new)
    group = create_arrays(staging, n_frames, pre.image_size, len(selection.channels))
    rgb, action = group["data/rgb"], group["data/action"]
    if previous is not None and n_kept_frames:
        for start in range(0, n_kept_frames, 256):
            stop = min(start + 256, n_kept_frames)
            rgb[start:stop] = previous.rgb[start:stop]
        action[:n_kept_frames] = previous.action[:n_kept_frames]
    cursor = n_kept_frames
    for source in new:
        with open_episode(Path(source.report.path)) as f:
            frames = resize_frames(f[settings.frames_key][()], pre)
        rgb[cursor : cursor + len(frames)] = frames
        action[cursor : cursor + len(frames)] = source.actions[:, selection.channels]
        cursor += len(frames)
        if progress:
            progress(1)

    hashes = [e.content_hash for e in kept] + [s.content_hash for s in new]
    how = options.splits.stratify
    strata = [_stratum(e.scenario, e.instruction, how) for e in kept]
    strata += [_stratum(s.report.scenario, s.report.instruction, how) for s in new]
    splits = assign_splits(hashes, strata, options.splits, existing={e.content_hash: e.split for e in kept})
    records = kept + [
        EpisodeRecord(
            episode=len(kept) + i,
            source_path=s.report.path,
            content_hash=s.content_hash,
            n_frames=len(s.actions),
            instruction=s.report.instruction or "",
            instruction_source=s.report.instruction_source,
            scenario=s.report.scenario or "unknown",
            split=splits[len(kept) + i],
        )
        for i, s in enumerate(new)
    ]
    write_episode_ends(group, [r.n_frames for r in records])
    stats = _train_stats(group, records, options)
    write_table(staging, records)
    log = previous_log(previous)
    log.runs.append(
        BuildLogEntry(
            tool_version=__version__,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            added=[s.report.path for s in new],
            kept=len(kept),
            skipped=skipped,
            duplicates=duplicates,
        )
    )
    (staging / BUILD_LOG).write_text(log.model_dump_json(indent=2) + "\n")
    manifest = StoreManifest(
        tool_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        sources=sorted({str(Path(r.source_path).parent) for r in records}),
        preprocessing=pre,
        actions=selection,
        splits=options.splits,
        split_episodes={s: sum(r.split == s for r in records) for s in Split},
        split_frames={s: sum(r.n_frames for r in records if r.split == s) for s in Split},
        n_episodes=len(records),
        n_frames=n_frames,
        stats=stats,
        checksums=object_checksums(staging),
    )
    finalize(staging, manifest)
    return manifest


def _stratum(scenario: str | None, instruction: str | None, how: Stratify) -> str:
    return {Stratify.scenario: scenario or "unknown", Stratify.instruction: instruction or "", Stratify.none: ""}[how]


def previous_log(previous: DatasetStore | None) -> BuildLog:
    if previous is None:
        return BuildLog()
    return BuildLog.model_validate_json((previous.path / BUILD_LOG).read_text())


def _train_stats(group, records: list[EpisodeRecord], options: BuildOptions) -> NormStats:
    ends = np.cumsum([r.n_frames for r in records])
    starts = ends - np.array([r.n_frames for r in records])
    train = [(int(a), int(b)) for a, b, r in zip(starts, ends, records, strict=True) if r.split == Split.train]
    actions = np.concatenate([group["data/action"][a:b] for a, b in train])
    moments = ImageMoments()
    for a, b in train:
        moments.add(group["data/rgb"][a:b])
    mean, std = moments.mean_std()
    return NormStats(mode=options.norm_mode, action=action_stats(actions), image_mean=mean, image_std=std)
