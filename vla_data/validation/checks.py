"""Checking recorder episodes against the contract in ``schemas.recorder``: per file, then across files.

``check_file`` never raises: whatever a file holds, it comes back as a ``FileReport`` with findings.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import h5py
import numpy as np

from schemas import (
    ArrayHeader,
    DatasetSummary,
    FileReport,
    Finding,
    FindingCode,
    InstructionSource,
    RawEpisode,
    RecorderSettings,
    Scenario,
    SourceKind,
    ValidateOptions,
    ValidationReport,
    default_action_names,
)
from schemas.fixes import Fix
from vla_data import __version__
from vla_data.validation.bags import check_bag
from vla_data.sources.bags import is_bag, split_part
from vla_data.sources.hdf5 import (
    FileLayout,
    InstructionIndex,
    decode_text,
    file_layout,
    fingerprint,
    first_chunk_bytes,
    header,
    iter_frame_tokens,
    open_episode,
    plain_attributes,
    read_actions,
    resolve_instruction,
)


_finding = Finding.of


def check_file(
    path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
) -> FileReport:
    """Validate one source episode: an HDF5 file (headers, attributes and small datasets; every frame with
    ``deep``) or a ROS 2 bag (``vla_data.validation.bags``)."""
    bag, _ = split_part(path)
    if is_bag(bag):
        return _one_episode(path, check_bag(bag, settings, options, index))
    report = FileReport(path=str(path))
    scenario = Scenario.from_file_name(path.name)
    report.scenario = scenario.name if scenario else None
    try:
        if not h5py.is_hdf5(path):
            report.findings.append(
                _finding(
                    FindingCode.not_hdf5,
                    path,
                    None,
                    "not an HDF5 file (no HDF5 signature)",
                    "remove it from the dataset folder, or re-export it from the recorder",
                )
            )
            return report
        with open_episode(path) as f:
            _check_open_file(f, path, report, settings, options, index)
    except Exception as exc:  # a corrupt file can fail anywhere inside libhdf5; it is a finding, not a crash
        report.findings.append(
            _finding(
                FindingCode.corrupt_file,
                path,
                None,
                f"cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(),
                "the file is truncated or damaged (often a copy interrupted mid-way); copy it again from the robot",
            )
        )
    return report


def check_source(path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
                 ) -> list[FileReport]:
    """Validate one source: an HDF5 file (one episode) or a bag (each episode it gives)."""
    if is_bag(path):
        return check_bag(path, settings, options, index)
    return [check_file(path, settings, options, index)]


def _one_episode(path: Path, reports: list[FileReport]) -> FileReport:
    """The report of the episode ``path`` names (a bag, or BAG#k of a cut bag), or one that says it names none."""
    for report in reports:
        if report.path == str(path):
            return report
    names = ", ".join(r.path for r in reports[:3]) + (f" ... ({len(reports)})" if len(reports) > 3 else "")
    return FileReport(path=str(path), kind=SourceKind.rosbag2, findings=[_finding(
        FindingCode.empty_episode, path, None, f"the bag is cut into {len(reports)} episodes: {names}",
        "name one of them: BAG#k for the k-th")])


def _check_open_file(
    f: h5py.File,
    path: Path,
    report: FileReport,
    settings: RecorderSettings,
    options: ValidateOptions,
    index: InstructionIndex,
) -> None:
    layout = file_layout(f)
    actions = read_actions(layout, settings.actions_key)
    in_file_instruction = _file_instruction(layout, settings.instruction_key)
    instruction, source = resolve_instruction([(in_file_instruction, InstructionSource.file)], path, index, settings)
    facts = {
        "path": str(path),
        "keys": sorted(layout.datasets),
        "external_links": layout.external_links,
        "external_storage": layout.external_storage,
        "virtual_datasets": layout.virtual_datasets,
        "cameras": {c.name: _header_if_present(layout, c.key) for c in settings.cameras},
        "actions": _header_if_present(layout, settings.actions_key),
        "action_values": actions,
        "instruction": instruction,
        "instruction_source": source,
        "attributes": plain_attributes(f),
    }
    report.instruction, report.instruction_source = instruction, source
    episode, errors = RawEpisode.findings_for(facts, settings)
    report.findings.extend(errors)
    if episode is None:
        return
    report.n_frames, report.frame_size = episode.n_frames, episode.frame_size
    report.frame_sizes = episode.frame_sizes
    values = episode.action_values
    if values is not None and values.size:
        report.action_min = values.min(axis=0).astype(float).tolist()
        report.action_max = values.max(axis=0).astype(float).tolist()
    report.findings.extend(episode.warnings(settings, options.window))
    headers = [episode.cameras[c.name] for c in settings.cameras]
    datasets = [layout.datasets[c.key] for c in settings.cameras]
    if any(h is None for h in headers):  # an external link, reported as such: nothing to hash
        return
    if options.deep:
        report.fingerprint = _deep_frames(datasets, headers, episode, path, report)  # type: ignore[arg-type]
    else:
        report.fingerprint = fingerprint(values, [(h, [first_chunk_bytes(ds)])  # type: ignore[misc]
                                                  for h, ds in zip(headers, datasets, strict=True)])


def _deep_frames(datasets: list[h5py.Dataset], headers: list[ArrayHeader], episode: RawEpisode, path: Path,
                 report: FileReport) -> str | None:
    """Decode every frame of every camera once: undecodable chunks, frozen cameras, and the fingerprint of
    every frame."""
    repeats: dict[str, list[int]] = {h.key: [] for h in headers}
    decoding = headers[0].key

    def tokens(ds: h5py.Dataset, key: str) -> Iterator[bytes]:
        nonlocal decoding
        decoding = key
        previous = None
        for i, token in enumerate(iter_frame_tokens(ds)):
            if token == previous:
                repeats[key].append(i)
            previous = token
            yield token

    try:
        digest = fingerprint(episode.action_values,
                             [(h, tokens(ds, h.key)) for h, ds in zip(headers, datasets, strict=True)])
    except OSError as exc:
        report.findings.append(
            _finding(
                FindingCode.corrupt_file,
                path,
                decoding,
                f"frame data cannot be decoded ({str(exc).splitlines()[0]})",
                "a compressed chunk is damaged; copy the file again from the robot or drop the episode",
            )
        )
        return None
    for key, frames in repeats.items():
        if frames:
            report.findings.append(
                _finding(
                    FindingCode.frozen_camera,
                    path,
                    key,
                    f"{len(frames)} frame(s) identical to the one before, first at frame {frames[0]}",
                    "the camera stream stalled while recording; check the camera driver, or drop the episode",
                )
            )
    return digest


def _header_if_present(layout: FileLayout, key: str):
    ds = layout.datasets.get(key)
    return header(ds, key) if ds is not None else None


def _file_instruction(layout: FileLayout, key: str) -> str | None:
    if not layout.is_local(key):
        return None
    ds = layout.datasets[key]
    if ds.dtype.kind not in "SUO" or ds.size > 16:
        return None
    return decode_text(ds[()])


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
    """Check every file (in ``options.workers`` processes), then across files. ``progress(n)`` per file done."""
    index = InstructionIndex.for_files(files, settings.index_csv_name)
    check = partial(check_source, settings=settings, options=options, index=index)
    workers = min(options.workers, len(files), os.cpu_count() or 1)
    reports: list[FileReport] = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for found in pool.map(check, files, chunksize=max(1, len(files) // (8 * workers))):
                reports.extend(found)
                if progress:
                    progress(1)
    else:
        for file in files:
            reports.extend(check(file))
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
