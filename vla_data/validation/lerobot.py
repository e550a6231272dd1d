"""Validation rules for a LeRobotDataset v3.0 folder: the recorder contract (``schemas.recorder``) on each episode it
gives (a camera or action feature the settings name and the folder lacks, the action width, the instruction), plus
what only LeRobot's files show: frame timestamps that are not frame_index / fps (LeRobot's reader finds no video
frame then), and frames that do not decode (the first of each camera; every one with the deep pass). The
findings that stop the folder giving any episode (unreadable meta, another format version) come from reading it
(``vla_data.sources.lerobot``).

``check_lerobot`` never raises: whatever the folder holds comes back as findings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas import FileReport, Finding, FindingCode, InstructionSource, RecorderSettings, Scenario, SourceKind
from schemas import ValidateOptions
from vla_data.sources.instructions import InstructionIndex, resolve_instruction
from vla_data.sources.lerobot import TIMESTAMP_TOLERANCE_S, LeRobotEpisode, read_export, read_lerobot
from vla_data.validation.contract import apply_contract

_finding = Finding.of


def _source_names(root: Path) -> dict[int, str]:
    """Episode index -> the recording it was exported from, where vla-data exported the folder (its scenario)."""
    export = read_export(root)
    return {} if export is None else {e.episode_index: e.source_path for e in export.episodes}


def check_lerobot(path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
                  ) -> list[FileReport]:
    """One report per episode of the folder (one for a folder that gives none, with the findings why)."""
    try:
        read = read_lerobot(path, settings)
    except Exception as exc:  # a damaged parquet file can fail anywhere inside pyarrow: a finding, not a crash
        read = [_finding(FindingCode.corrupt_file, path, None, f"cannot be read as a LeRobot dataset: "
                         f"{type(exc).__name__}: {exc}", "copy the dataset again, or rewrite it with LeRobot")]
    if not read or isinstance(read[0], Finding):
        only = FileReport(path=str(path), kind=SourceKind.lerobot)
        only.findings.extend(read)  # type: ignore[arg-type]
        return [only]
    names = _source_names(path)
    out = []
    for episode in read:
        scenario = Scenario.from_file_name(Path(names.get(episode.index, path.name)).name)  # type: ignore[union-attr]
        out.append(FileReport(path=episode.ref, kind=SourceKind.lerobot,  # type: ignore[union-attr]
                              scenario=scenario.name if scenario else None))
        try:
            _check(episode, out[-1], settings, options, index)  # type: ignore[arg-type]
        except Exception as exc:  # as above
            out[-1].findings.append(_finding(FindingCode.corrupt_file, out[-1].path, None,
                                             f"cannot be read: {type(exc).__name__}: {exc}",
                                             "copy the dataset again, or rewrite it with LeRobot"))
    return out


def _check(episode: LeRobotEpisode, report: FileReport, settings: RecorderSettings, options: ValidateOptions,
           index: InstructionIndex) -> None:
    info = episode.meta.info
    instruction, source = resolve_instruction([(episode.instruction, InstructionSource.task)], Path(episode.ref),
                                              index, settings, also=episode.meta.root)
    report.instruction, report.instruction_source = instruction, source
    report.topics = [h.key for h in episode.headers.values() if h is not None]
    stamps = np.round(episode.timestamps * 1e9).astype(np.int64)
    if len(stamps):
        report.start_ns, report.stop_ns = int(stamps[0]), int(stamps[-1])
    feature = info.features.get(settings.actions_key)
    facts = {
        "path": episode.ref,
        "kind": SourceKind.lerobot,
        "keys": sorted(info.features),
        "cameras": episode.headers,
        "actions": None if feature is None else {"key": settings.actions_key, "shape": episode.actions.shape,
                                                  "dtype": "float32"},
        "action_values": episode.actions if feature is not None else None,
        "instruction": instruction,
        "instruction_source": source,
        "attributes": {},
    }
    if apply_contract(report, facts, episode.actions, settings, options) is None:
        return
    report.findings.extend(_timestamp_findings(episode))
    report.findings.extend(_decode_findings(episode, options.deep))
    if report.ok:
        report.fingerprint = episode.fingerprint()


def _timestamp_findings(episode: LeRobotEpisode) -> list[Finding]:
    fps = episode.meta.info.fps
    off = np.abs(episode.timestamps - np.arange(len(episode.timestamps)) / fps)
    if not len(off) or off.max() <= TIMESTAMP_TOLERANCE_S:
        return []
    first = int(np.argmax(off > TIMESTAMP_TOLERANCE_S))
    return [_finding(
        FindingCode.timestamps_off_rate, episode.ref, "timestamp",
        f"{int((off > TIMESTAMP_TOLERANCE_S).sum())} frame timestamp(s) off frame_index / fps ({fps}) by more than "
        f"{TIMESTAMP_TOLERANCE_S:g} s, the first at frame {first} ({episode.timestamps[first]:.4f} s, up to "
        f"{off.max():.4f} s off)", "vla-data keeps the frames in order; LeRobot's reader finds no video frame at such "
        "a timestamp: fix `fps` in meta/info.json, or rewrite the timestamps")]


def _decode_findings(episode: LeRobotEpisode, deep: bool) -> list[Finding]:
    """The first frame of each camera decodes (deep: every frame), at the size info.json declares."""
    findings = []
    for name, frames in episode.cameras.items():
        header = episode.headers[name]
        assert header is not None
        n = header.shape[0] if deep else 1
        try:
            pixels = frames.read(0, n).pixels
        except Exception as exc:  # PIL, PyAV and pyarrow each raise their own
            findings.append(_finding(FindingCode.corrupt_file, episode.ref, frames.key,
                                     f"{frames.key}: a frame does not decode ({type(exc).__name__}: {exc})",
                                     "the image or video data is damaged; copy the dataset again or drop the episode"))
            continue
        if pixels.shape[1:3] != header.shape[1:3]:
            findings.append(_finding(FindingCode.corrupt_file, episode.ref, frames.key,
                                     f"{frames.key}: frames are {pixels.shape[1]}x{pixels.shape[2]}, info.json "
                                     f"declares {header.shape[1]}x{header.shape[2]}",
                                     "fix the feature's shape in meta/info.json"))
    return findings
