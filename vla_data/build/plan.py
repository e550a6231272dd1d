"""What the next version of a store holds, decided from validated sources and the store already there.

Each source is sorted against the store: already stored (by content), a duplicate of another episode
(listed, with the one kept), a stored source whose content changed (refused, or replacing its stored
episode in its split), or new. The action channels are chosen (an incremental build keeps the store's and
refuses episodes that use a channel it dropped as constant), every new episode gets its split, and
``vla_data.store.writer.write_version`` writes and publishes the version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas import FileReport, RecorderSettings, ValidationReport, default_action_names
from schemas.recorder import InstructionSource
from schemas.store import (
    ActionSelection,
    BuildLog,
    BuildLogEntry,
    BuildOptions,
    DroppedChannel,
    Duplicate,
    EpisodeRecord,
    FileStamp,
    InstructionChange,
    ReplacedEpisode,
    SkippedEpisode,
    Split,
    StoreManifest,
    Stratify,
    store_features,
)
from vla_data import __version__
from vla_data.store.location import StoreLocation
from vla_data.store.ownership import Ownership, ownership_of
from vla_data.sources.formats import source_exists
from vla_data.store.history import episode_table
from vla_data.store.versions import objects_of, read_pointer
from vla_data.build.sources import ValidatedEpisode, read_sources, resolved
from vla_data.build.splits import assign_splits, match_split_file, read_split_file
from vla_data.common.refusal import Fix
from vla_data.store.reader import DatasetStore, StoreError, open_store
from vla_data.store.writer import BuildProgress, EpisodeInput, unchanged, write_version
from vla_data.validation.checks import channel_range


@dataclass(frozen=True)
class Built:
    """What a build did: the manifest of the store's version now, and whether it wrote one."""

    manifest: StoreManifest
    entry: BuildLogEntry  # what the build found (written to the build log only with a new version)
    unchanged: bool = False  # nothing new: no version written, the current one stays


def select_channels(usable: list[FileReport], options: BuildOptions, action_dim: int) -> ActionSelection:
    """The channels to keep, and the others with the value they held when dropped as constant (auto)."""
    lo, hi = channel_range(usable)
    if options.action_channels == "auto":
        channels = [c for c in range(action_dim) if lo[c] != hi[c]]
        if not channels:
            raise StoreError("every action channel is constant across the sources; nothing to learn")
    else:
        channels = list(options.action_channels)
        bad = [c for c in channels if not 0 <= c < action_dim]
        if bad:
            raise StoreError(f"action channels {bad} out of range: the recorder writes channels 0..{action_dim - 1}",
                             Fix({"action_channels": ",".join(str(c) for c in channels if c not in bad) or "auto"},
                                 "to keep only channels it writes"))
    default_names = default_action_names(action_dim)
    names = options.action_names or [default_names[c] for c in channels]
    auto = options.action_channels == "auto"
    dropped = [DroppedChannel(channel=c, name=default_names[c], value=float(lo[c]) if auto else None)
               for c in range(action_dim) if c not in channels]
    try:
        return ActionSelection(channels=channels, names=names, dropped=dropped)
    except ValueError as exc:
        raise StoreError(f"action channels {channels} and names {names} do not fit: {exc}") from exc


def _load_previous(out: StoreLocation, options: BuildOptions, settings: RecorderSettings) -> DatasetStore | None:
    """The store already at ``out`` that this build extends, or None (nothing there, or ``overwrite``)."""
    kind = ownership_of(out)
    if kind in (Ownership.absent, Ownership.empty, Ownership.incomplete) or (options.overwrite and kind != Ownership.foreign):
        return None
    previous = open_store(out)  # a foreign folder or an incomplete store is refused here, saying which
    m = previous.manifest
    if m.preprocessing != options.preprocessing:
        raise StoreError(
            f"{out} was built with {m.preprocessing.model_dump(mode='json')}, not "
            f"{options.preprocessing.model_dump(mode='json')}",
            Fix({"overwrite": True}, "to rebuild it"))
    cameras = [c.camera_source for c in m.cameras]
    if cameras != list(settings.cameras):
        raise StoreError(
            f"{out} holds camera(s) {'; '.join(c.describe() for c in cameras)}, not "
            f"{'; '.join(c.describe() for c in settings.cameras)} as asked now: give the same cameras",
            Fix({"overwrite": True}, "to rebuild it with these"))
    if not m.splits.same_rule(options.splits):
        raise StoreError(
            f"{out} assigns new episodes by {m.splits.model_dump(mode='json', exclude={'split_file'})}"
            f"{' and a split file' if m.splits.split_file else ''}, not as asked now; stored episodes keep their "
            "split either way: give the same split options",
            Fix({"overwrite": True}, "to re-split everything"))
    return previous


@dataclass
class PlannedEpisode:
    """One episode of the store being built: copied from the previous store, or read from a source."""

    record: EpisodeRecord  # its split is settled once every entry is known
    source: ValidatedEpisode | None = None  # None: frames and actions copied from the previous store
    fixed: bool = True  # False: a new episode, placed by the split rule


@dataclass
class SortedSources:
    """The sources sorted against the store: what is added, replaced, left out, and what changed."""

    entries: list[PlannedEpisode]
    duplicates: list[Duplicate]
    replaced: list[ReplacedEpisode]
    changed: list[tuple[EpisodeRecord, ValidatedEpisode]]
    hash_of: dict[Path, str]
    instructions: list[InstructionChange] = field(default_factory=list)
    left_out_removed: list[str] = field(default_factory=list)  # sources of episodes `vla-data remove` removed
    recognised: int = 0  # stored source files recognised by their stamp, not read


def _sort_sources(usable: list[FileReport], previous: DatasetStore | None, options: BuildOptions,
                  settings: RecorderSettings, assumed: Mapping[str, FileStamp]) -> SortedSources:
    """One pass over the sources: each is already stored (by content), a duplicate of another (listed), a
    stored source whose content changed (refused, or replacing its stored episode in its split), or new."""
    stored = [EpisodeRecord.model_validate(row) for row in previous.episodes.to_dict("records")] if previous else []
    by_hash = {r.content_hash: r for r in stored}
    by_path = {resolved(r.source_path): r for r in stored}
    first_of: dict[str, str] = {}
    replacing: dict[int, ValidatedEpisode] = {}
    removed: set[int] = set()
    new: list[ValidatedEpisode] = []
    relabel: dict[int, FileReport] = {}  # stored episode -> the report giving its new instruction
    stamp_of: dict[int, FileStamp | None] = {}  # stored episode -> its source file's stamp now
    taken_out = {e.content_hash for e in previous.build_log().removed} if previous else set()
    result = SortedSources([], [], [], [], {})
    sources = read_sources(usable, options, settings, by_path, assumed)
    result.recognised = sum(s.known_hash is not None for s in sources)
    for source in sources:
        r = source.report
        digest, path = source.content_hash, Path(r.path)
        result.hash_of[path] = digest
        if digest in taken_out and digest not in by_hash:
            result.left_out_removed.append(r.path)
            continue
        old = by_path.get(path)
        if old is not None and old.content_hash != digest:
            result.changed.append((old, source))
            if not options.replace_changed:
                continue
            removed.add(old.episode)  # its new content replaces it below, unless another episode holds it already
        same = by_hash.get(digest)
        if (same is not None and resolved(same.source_path) == path and (r.instruction or "") != same.instruction
                and same.instruction_source != InstructionSource.relabel):  # a relabel is the user's word: kept
            result.instructions.append(InstructionChange(source_path=r.path, stored=same.instruction,
                                                         now=r.instruction or "", applied=options.update_instructions))
            relabel[same.episode] = r
        if same is not None and resolved(same.source_path) == path:
            stamp_of[same.episode] = source.stamp  # its file as it is now: the next build needs no read
        if same is not None or digest in first_of:
            if same is None or resolved(same.source_path) != path:
                result.duplicates.append(Duplicate(source_path=r.path,
                                                   same_as=same.source_path if same else first_of[digest]))
            continue
        first_of[digest] = r.path
        if old is not None and old.episode in removed:
            replacing[old.episode] = source
            result.replaced.append(ReplacedEpisode(source_path=r.path, old_hash=old.content_hash, new_hash=digest,
                                                   split=old.split))
        else:
            new.append(source)
    for record in stored:
        if record.episode not in removed:
            record = record.stamped(stamp_of.get(record.episode))
            if options.update_instructions and record.episode in relabel:
                report = relabel[record.episode]
                record = record.model_copy(update={"instruction": report.instruction or "",
                                                   "instruction_source": report.instruction_source})
            result.entries.append(PlannedEpisode(record))
        elif record.episode in replacing:
            result.entries.append(PlannedEpisode(_new_record(record.episode, replacing[record.episode], record.split),
                                        replacing[record.episode]))
    result.entries += [PlannedEpisode(_new_record(0, s, Split.train), s, fixed=False) for s in new]
    for i, entry in enumerate(result.entries):  # episode ids follow store order
        entry.record = entry.record.model_copy(update={"episode": i})
    return result


def _new_record(episode: int, s: ValidatedEpisode, split: Split) -> EpisodeRecord:
    return _record(episode, s, split).stamped(s.stamp)


def _record(episode: int, s: ValidatedEpisode, split: Split) -> EpisodeRecord:
    return EpisodeRecord(
        episode=episode,
        source_path=s.report.path,
        content_hash=s.content_hash,
        n_frames=len(s.actions),
        instruction=s.report.instruction or "",
        instruction_source=s.report.instruction_source,
        scenario=s.report.scenario or "unknown",
        split=split,
        source_kind=s.report.kind,
        source_topics=";".join(s.report.topics),
        start_ns=s.report.start_ns,
        stop_ns=s.report.stop_ns,
    )


def _refuse_changed(changed: list[tuple[EpisodeRecord, ValidatedEpisode]], out: StoreLocation) -> None:
    listed = "; ".join(f"{s.report.path} (stored {old.content_hash[:12]}, now {s.content_hash[:12]})"
                       for old, s in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    raise StoreError(
        f"{len(changed)} source(s) changed since {out} stored them: {listed}{more}. Restore the recorded files",
        Fix({"replace_changed": True}, "to replace each stored episode with the file's new content, in the same split"))


def _refuse_dropped_channels(previous: DatasetStore, sources: list[ValidatedEpisode], options: BuildOptions) -> None:
    """An incremental build keeps the store's channels; it refuses episodes that use a channel dropped as
    constant (unless the same ``action_channels`` are given explicitly: then dropping it is a choice)."""
    selection = previous.manifest.actions
    if options.action_channels != "auto":
        return
    for d in selection.dropped:
        users = [s.report.path for s in sources
                 if d.value is not None and d.channel < s.actions.shape[1] and np.any(s.actions[:, d.channel] != d.value)]
        if users:
            every = ",".join(str(c) for c in sorted({*selection.channels, d.channel}))
            kept = ",".join(str(c) for c in selection.channels)
            raise StoreError(
                f"{len(users)} new episode(s) use action channel {d.channel} ({d.name}), which {previous.location} "
                f"dropped because it was {d.value:g} in every episode it was built from, e.g. "
                f"{', '.join(users[:3])}; adding them would throw those commands away",
                Fix({"overwrite": True, "action_channels": every}, "to rebuild the store with the channel"),
                Fix({"action_channels": kept}, "to drop it knowingly"))


def build_version(report: ValidationReport, root: Path, out: StoreLocation, options: BuildOptions, settings: RecorderSettings,
                  progress: BuildProgress | None = None, assumed: Mapping[str, FileStamp] | None = None) -> Built:
    """Decide and write the next version of the store at ``out`` from validated sources (``report``, their
    common folder ``root``; ``assumed``: the paths of its reports made from stored records, not validated, with
    the stamps they were recognised by);
    call it inside ``vla_data.store.writer.writing``. Raises ``StoreError`` or ``SplitError``
    with a message for the user."""
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
    previous = _load_previous(out, options, settings)
    selection = previous.manifest.actions if previous is not None else select_channels(usable, options, settings.action_dim)
    if previous is not None and options.action_channels != "auto" and list(options.action_channels) != selection.channels:
        raise StoreError(f"{out} keeps channels {selection.channels}", Fix({"overwrite": True}, "to change them"))

    plan = _sort_sources(usable, previous, options, settings, assumed or {})
    if plan.changed and not options.replace_changed:
        _refuse_changed(plan.changed, out)
    if previous is not None:
        _refuse_dropped_channels(previous, [e.source for e in plan.entries if e.source is not None], options)
    if options.overwrite:
        _refuse_unpruned(out, set(plan.hash_of.values()), options)
    stored = {e.record.content_hash: e.record.split for e in plan.entries if e.fixed}
    explicit, unmatched = _explicit_splits(options, usable, root, plan.hash_of, stored)
    entry = BuildLogEntry(
        tool_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        added=[e.record.source_path for e in plan.entries if not e.fixed],
        kept=sum(e.source is None for e in plan.entries),
        skipped=skipped,
        duplicates=plan.duplicates,
        replaced=plan.replaced,
        unmatched_split_rows=unmatched,
        instructions_changed=plan.instructions,
        sources_gone=[e.record.source_path for e in plan.entries if e.source is None
                      and not source_exists(e.record.source_path)],
        left_out_removed=plan.left_out_removed,
        recognised=plan.recognised,
    )
    episodes = _settle_splits(plan.entries, explicit, options, selection)
    features = store_features(options.preprocessing, selection, settings.cameras, settings.actions_key)
    if previous is not None and unchanged(previous, episodes):
        return Built(previous.manifest, entry, unchanged=True)  # a build with nothing new writes nothing
    log = previous.build_log() if previous is not None else BuildLog()  # an overwrite starts a new build log
    log.runs.append(entry)
    return Built(write_version(out, previous, episodes, selection, features, options, log, progress), entry)


def _refuse_unpruned(out: StoreLocation, hashes: set[str], options: BuildOptions) -> None:
    """An overwrite that would leave out stored episodes the sources no longer hold is refused unless ``prune``:
    the new version would silently lose them (the current one stays in the history either way)."""
    try:
        current = episode_table(objects_of(out, read_pointer(out)))
    except (OSError, ValueError):  # nothing readable to lose: a damaged or foreign-format store is rebuilt
        return
    lost = [r.source_path for r in current if r.content_hash not in hashes]
    if lost and not options.prune:
        listed = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
        raise StoreError(f"{len(lost)} stored episode(s) are not in the sources and will not be in the new version "
                         f"({listed})", Fix({"prune": True}, "to build without them (the current version stays in "
                                               "the store's history, readable as STORE@VERSION)"))


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
            "stored episodes keep their split",
            Fix({"overwrite": True}, "to rebuild with the file's splits"))
    return explicit, unmatched


def _settle_splits(entries: list[PlannedEpisode], explicit: dict[str, Split], options: BuildOptions,
                   selection: ActionSelection) -> list[EpisodeInput]:
    """Every episode of the new version with its split: stored ones keep theirs, the split file's are as it
    says, new ones by the split rule; new episodes keep only the selected action channels."""
    how = options.splits.stratify
    fixed = explicit | {e.record.content_hash: e.record.split for e in entries if e.fixed}
    splits = assign_splits([e.record.content_hash for e in entries],
                           [_stratum(e.record.scenario, e.record.instruction, how) for e in entries],
                           options.splits, existing=fixed)
    out = []
    for e, split in zip(entries, splits, strict=True):
        record = e.record.model_copy(update={"split": split})
        if e.source is None:
            out.append(EpisodeInput.copied(record))
            continue
        assert e.source.episode is not None  # a new episode is always read
        out.append(EpisodeInput.recorded(record, e.source.episode.cameras, e.source.actions[:, selection.channels],
                                         tuple(e.source.report.frame_sizes.values())))
    return out


def _stratum(scenario: str | None, instruction: str | None, how: Stratify) -> str:
    return {Stratify.scenario: scenario or "unknown", Stratify.instruction: instruction or "", Stratify.none: ""}[how]
