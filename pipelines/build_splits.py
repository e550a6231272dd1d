"""The build-splits job: validated recorder episodes -> one zarr store with splits and train-only stats.

Sources are validated first (default pass); the store is built in a staging folder and published by
renames (``vla_data.store.publish``). Re-running on the same output adds only episodes whose content is
new, keeps every existing episode's frames and split, and recomputes the stats.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

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
from vla_data.shards import EpisodeSource, fill_frames, plan_shards
from vla_data.splits import assign_splits, match_split_file, read_split_file
from vla_data.stats import ImageMoments, action_stats
from vla_data.store import (
    BUILD_LOG,
    FRAMES_PER_SHARD,
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
    if not m.splits.same_rule(options.splits):
        raise StoreError(
            f"{out} assigns new episodes by {m.splits.model_dump(mode='json', exclude={'split_file'})}"
            f"{' and a split file' if m.splits.split_file else ''}, not as asked now; stored episodes keep their "
            "split either way: pass the same split options, or --overwrite to re-split everything"
        )
    return previous


class BuildProgress(Protocol):
    """What build_splits reports while it writes frames (the CLI draws a bar from it)."""

    def start(self, frames: int, episodes: int) -> None: ...

    def advance(self, frames: int, episodes: int) -> None: ...


def build_splits(
    sources: list[Path],
    out: Path,
    options: BuildOptions,
    settings: RecorderSettings,
    progress: BuildProgress | None = None,
) -> StoreManifest:
    files = episode_files(sources)
    root = Path(common_root(sources))
    report = validate(files, settings, ValidateOptions(), root=str(root))
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

    stored = dict(zip(previous.episodes["content_hash"], previous.episodes["split"], strict=True)) if previous else {}
    new: list[Source] = []
    new_hashes: set[str] = set()
    hash_of: dict[Path, str] = {}
    duplicates: list[str] = []
    for r in usable:
        source = _read_source(r, settings)
        hash_of[Path(r.path)] = source.content_hash
        if source.content_hash in stored:
            continue  # already in the store: kept as it is
        if source.content_hash in new_hashes:
            duplicates.append(r.path)
            continue
        new_hashes.add(source.content_hash)
        new.append(source)
    explicit, unmatched = _explicit_splits(options, usable, root, hash_of, stored)

    kept = (
        [EpisodeRecord.model_validate(row) for row in previous.episodes.to_dict("records")] if previous else []
    )
    entry = BuildLogEntry(
        tool_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        added=[s.report.path for s in new],
        kept=len(kept),
        skipped=skipped,
        duplicates=duplicates,
        unmatched_split_rows=unmatched,
    )
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}")
    try:
        manifest = _write_staging(staging, previous, new, kept, selection, explicit, entry, options, settings, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, out)
    return manifest


def _explicit_splits(
    options: BuildOptions, usable: list[FileReport], root: Path, hash_of: dict[Path, str], stored: dict[str, str]
) -> tuple[dict[str, Split], list[str]]:
    """Content hash -> split from --split-file (empty without one), and its rows that named no source."""
    if options.splits.split_file is None:
        return {}, []
    rows = read_split_file(Path(options.splits.split_file))
    by_path, unmatched = match_split_file(rows, [Path(r.path) for r in usable], root)
    explicit = {hash_of[p]: split for p, split in by_path.items()}
    moved = [(p, stored[hash_of[p]], split) for p, split in by_path.items() if stored.get(hash_of[p], split) != split]
    if moved:
        p, was, now = moved[0]
        raise StoreError(
            f"the split file moves {len(moved)} stored episode(s), e.g. {p} from {was} to {now.value}; "
            "stored episodes keep their split: pass --overwrite to rebuild with the file's splits"
        )
    return explicit, unmatched


def _write_staging(
    staging: Path,
    previous: DatasetStore | None,
    new: list[Source],
    kept: list[EpisodeRecord],
    selection: ActionSelection,
    explicit: dict[str, Split],
    entry: BuildLogEntry,
    options: BuildOptions,
    settings: RecorderSettings,
    progress: BuildProgress | None,
) -> StoreManifest:
    pre = options.preprocessing
    hashes = [e.content_hash for e in kept] + [s.content_hash for s in new]
    how = options.splits.stratify
    strata = [_stratum(e.scenario, e.instruction, how) for e in kept]
    strata += [_stratum(s.report.scenario, s.report.instruction, how) for s in new]
    fixed = explicit | {e.content_hash: e.split for e in kept}
    splits = assign_splits(hashes, strata, options.splits, existing=fixed)
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
    n_frames = sum(r.n_frames for r in records)
    n_kept_frames = sum(e.n_frames for e in kept)
    group = create_arrays(staging, n_frames, pre.image_size, len(selection.channels))
    kept_actions = [np.asarray(previous.action[:n_kept_frames])] if previous is not None and kept else []
    actions = np.concatenate(kept_actions + [s.actions[:, selection.channels] for s in new]).astype(np.float32)
    group["data/action"][:] = actions
    write_episode_ends(group, [r.n_frames for r in records])

    episode_sources, offset = [], 0
    for e in kept:
        episode_sources.append(EpisodeSource(e.episode, e.n_frames, previous.path / "data" / "rgb", None, offset))
        offset += e.n_frames
    for r, s in zip(records[len(kept) :], new, strict=True):
        episode_sources.append(EpisodeSource(r.episode, r.n_frames, Path(s.report.path), settings.frames_key))
    tasks = plan_shards(episode_sources, staging / "data" / "rgb", FRAMES_PER_SHARD, pre)
    if progress:
        progress.start(n_frames, len(records))
    moments = fill_frames(tasks, options.workers, progress.advance if progress else None)

    stats = _train_stats(actions, records, moments, options)
    write_table(staging, records)
    log = previous_log(previous)
    log.runs.append(entry)
    (staging / BUILD_LOG).write_text(log.model_dump_json(indent=2) + "\n")
    manifest = StoreManifest(
        tool_version=__version__,
        created=entry.created,
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


def _train_stats(
    actions: np.ndarray, records: list[EpisodeRecord], moments: dict[int, ImageMoments], options: BuildOptions
) -> NormStats:
    train = np.repeat([r.split == Split.train for r in records], [r.n_frames for r in records])
    images = ImageMoments()
    for r in records:
        if r.split == Split.train:
            images.merge(moments[r.episode])
    mean, std = images.mean_std()
    return NormStats(mode=options.norm_mode, action=action_stats(actions[train]), image_mean=mean, image_std=std)
