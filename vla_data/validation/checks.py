"""Checking source episodes against the contract in ``schemas.recorder``: each source by its format's rules
(``RULES``), then across episodes (duplicates, odd frame sizes, constant action channels, the summary).

``check_source`` never raises: whatever a source holds, it comes back as ``FileReport``s with findings.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from schemas import (
    DatasetSummary,
    FileReport,
    Finding,
    FindingCode,
    RecorderSettings,
    SourceKind,
    ValidateOptions,
    ValidationReport,
    default_action_names,
)
from schemas.fixes import Fix
from vla_data import __version__
from vla_data.common.pools import run_ordered
from vla_data.sources.formats import format_of
from vla_data.sources.instructions import InstructionIndex
from vla_data.validation.bags import check_bag
from vla_data.validation.hdf5 import check_hdf5
from vla_data.validation.lerobot import check_lerobot


_finding = Finding.of


# Each format's validation rules, by the source kind ``vla_data.sources`` tells: a new format adds one line.
RULES: dict[SourceKind, Callable[[Path, RecorderSettings, ValidateOptions, InstructionIndex], list[FileReport]]] = {
    SourceKind.hdf5: check_hdf5,
    SourceKind.rosbag2: check_bag,
    SourceKind.lerobot: check_lerobot,
}


def check_source(path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
                 ) -> list[FileReport]:
    """Validate one source: a report per episode it gives (one for a source that gives none, saying why); of a
    source's one episode (BAG#k, DIR#k), its report only. Never raises."""
    fmt, source = format_of(path)
    reports = RULES[fmt.kind](source, settings, options, index)
    if str(path) == str(source) or [r.path for r in reports] == [str(source)]:
        return reports  # the whole source, or a source that gives no episode (its one report says why)
    return [_one_episode(path, reports, fmt.kind)]


def check_file(path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
               ) -> FileReport:
    """Validate the one source episode ``path`` names: a file, a bag, or BAG#k / DIR#k of a source of several."""
    return _one_episode(path, check_source(path, settings, options, index), format_of(path)[0].kind)


def _one_episode(path: Path, reports: list[FileReport], kind: SourceKind) -> FileReport:
    """The report of the episode ``path`` names (a bag, BAG#k of a cut bag, DIR#k of a LeRobot dataset), or one
    that says it names none."""
    for report in reports:
        if report.path == str(path):
            return report
    names = ", ".join(r.path for r in reports[:3]) + (f" ... ({len(reports)})" if len(reports) > 3 else "")
    named = "" if str(path) == str(format_of(path)[1]) else f"{path} names no episode of its source: "
    return FileReport(path=str(path), kind=kind, findings=[_finding(
        FindingCode.empty_episode, path, None, f"{named}the source is cut into {len(reports)} episodes: {names}",
        "name one of them: BAG#k or DIR#k for the k-th")])


# -- across files ------------------------------------------------------------------------------------------
def channel_range(reports: Iterable[FileReport]) -> tuple[list[float], list[float]]:
    """Per action channel, the min and the max over every report that holds its episode's range; ([], [])
    when none does. The one place the sources' channel range is computed (findings, summary, build-splits)."""
    ranged = [r for r in reports if r.action_min is not None and r.action_max is not None]
    if not ranged:
        return [], []
    return np.min([r.action_min for r in ranged], axis=0).tolist(), np.max([r.action_max for r in ranged], axis=0).tolist()


def dataset_findings(reports: Sequence[FileReport], root: str, settings: RecorderSettings) -> list[Finding]:
    """Findings that need every file: constant action channels. Per-file cross checks go into the reports."""
    lo, hi = channel_range(r for r in reports if r.ok)
    names = default_action_names(settings.action_dim)
    return [
        _finding(
            FindingCode.constant_action_channel,
            Path(root),
            settings.actions_key,
            f"action channel {c} ({names[c]}) is {lo[c]:g} in every episode",
            "if the robot should use it, record episodes that do",
            Fix({"action_channels": "auto"}, "to drop it from the store", command="build-splits"),
        )
        for c in range(len(lo))
        if lo[c] == hi[c]
    ]


def mark_duplicates(reports: Sequence[FileReport]) -> None:
    by_print: dict[str, list[FileReport]] = defaultdict(list)
    for r in reports:
        if r.ok and r.fingerprint:
            by_print[r.fingerprint].append(r)
    for group in by_print.values():
        for dup in group[1:]:
            dup.findings.append(
                _finding(
                    FindingCode.duplicate_episode,
                    Path(dup.path),
                    None,
                    f"same content as {group[0].path}",
                    "delete one copy; duplicates weigh an episode twice and can leak between train and val",
                )
            )


def mark_odd_frame_sizes(reports: Sequence[FileReport], settings: RecorderSettings) -> None:
    """Per camera: episodes whose frames have another size than most episodes' frames of that camera."""
    for camera in settings.cameras:
        sizes = Counter(r.frame_sizes[camera.name] for r in reports if camera.name in r.frame_sizes)
        if len(sizes) < 2:
            continue
        (ch, cw), _ = sizes.most_common(1)[0]
        which = f"camera {camera.name}: " if len(settings.cameras) > 1 else ""
        for r in reports:
            size = r.frame_sizes.get(camera.name)
            if size is not None and size != (ch, cw):
                r.findings.append(
                    _finding(
                        FindingCode.frame_size_varies,
                        Path(r.path),
                        camera.key,
                        f"{which}frames are {size[0]}x{size[1]}; most episodes are {ch}x{cw}",
                        "fine for build-splits (every frame is resized once); check the camera settings if unintended",
                    )
                )


def summarize(reports: Sequence[FileReport], settings: RecorderSettings) -> DatasetSummary:
    ok = [r for r in reports if r.ok and r.n_frames is not None]
    lo, hi = channel_range(ok)
    return DatasetSummary(
        episodes=len(ok),
        frames=sum(r.n_frames or 0 for r in ok),
        instructions=dict(Counter(r.instruction for r in ok if r.instruction).most_common()),
        scenarios=dict(Counter(r.scenario or "unknown" for r in ok).most_common()),
        action_names=default_action_names(settings.action_dim),
        action_min=lo,
        action_max=hi,
    )


def validate(
    files: Sequence[Path],
    settings: RecorderSettings,
    options: ValidateOptions,
    root: str = ".",
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Check every file (in ``options.workers`` spawned processes, ``vla_data.common.pools``), then across files.
    ``progress(n)`` per file done."""
    index = InstructionIndex.for_files(files, settings.index_csv_name)
    check = partial(check_source, settings=settings, options=options, index=index)
    workers = max(1, min(options.workers, len(files), os.cpu_count() or 1))
    reports: list[FileReport] = []
    for found in run_ordered(check, files, workers, chunksize=max(1, len(files) // (8 * workers))):
        reports.extend(found)
        if progress:
            progress(1)
    mark_duplicates(reports)
    mark_odd_frame_sizes(reports, settings)
    return ValidationReport(
        tool_version=__version__,
        root=root,
        settings=settings,
        options=options,
        files=reports,
        dataset_findings=dataset_findings(reports, root, settings),
        summary=summarize(reports, settings),
    )
