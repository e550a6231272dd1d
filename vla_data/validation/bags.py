"""Validation rules for a ROS 2 bag source: the recorder contract (``schemas.recorder``) on each episode the bag
gives, plus what only a bag's streams show (dropped frames, cameras at different rates) and, deep, every frame
decoded. The findings that stop a bag giving any episode come from reading it (``vla_data.sources.bag_episodes``).

``check_bag`` never raises: whatever the bag holds comes back as findings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas import (
    ArrayHeader,
    FileReport,
    Finding,
    FindingCode,
    InstructionSource,
    RecorderSettings,
    Scenario,
    SourceKind,
    ValidateOptions,
)
from schemas.fixes import Fix
from vla_data.sources.bag_episodes import BagEpisode, corrupt_bag, read_bag
from vla_data.sources.bags import BagError, BagScan, iter_frames
from vla_data.sources.instructions import InstructionIndex, resolve_instruction
from vla_data.validation.contract import apply_contract


_finding = Finding.of


def _rate_findings(path: Path, scan: BagScan, span: tuple[int, int]) -> list[Finding]:
    """Dropped frames (gaps of more than 2 frame periods) per camera, within the episode's span [start, stop]
    (ns); cameras at different rates."""
    findings, rates = [], {}
    for name, camera in scan.cameras.items():
        stamps = np.asarray(camera.stamps, np.int64)
        steps = np.diff(stamps[(stamps >= span[0]) & (stamps <= span[1])])
        if len(steps) == 0:
            continue
        period = float(np.median(steps))
        rates[name] = 1e9 / period if period > 0 else 0.0
        gaps = np.flatnonzero(steps > 2 * period) if len(steps) > 1 else []
        if len(gaps):
            lost = int(sum(round(steps[g] / period) - 1 for g in gaps))
            findings.append(_finding(
                FindingCode.dropped_frames, path, camera.topic,
                f"{camera.topic}: {len(gaps)} gap(s) longer than 2 frame periods ({period / 1e6:.0f} ms), about "
                f"{lost} frame(s) missing, first after frame {int(gaps[0])}",
                "the camera or the recorder fell behind; the actions stay aligned by stamp, but the policy sees "
                "a jump: check the recorder's load, or drop the episode"))
    if len(rates) > 1 and max(rates.values()) > 1.1 * min(rates.values()):
        listed = ", ".join(f"{scan.cameras[n].topic} {r:.1f} Hz" for n, r in rates.items())
        findings.append(_finding(
            FindingCode.camera_rates_differ, path, scan.cameras[next(iter(rates))].topic,
            f"cameras at different rates: {listed}",
            "the first camera's frames are the clock; each other camera gives its last frame at or before each "
            "clock frame, so a slower camera's frames repeat: check the cameras' rate settings",
            Fix({"bag.fps": f"{min(rates.values()):.3g}"}, "(the slowest camera's rate)")))
    return findings


def check_bag(path: Path, settings: RecorderSettings, options: ValidateOptions, index: InstructionIndex
              ) -> list[FileReport]:
    """Validate a bag: one report per episode it gives (one for a bag that gives none, with the findings why).
    Never raises: whatever the bag holds comes back as findings."""
    scenario = Scenario.from_file_name(path.name)

    def report(name: str) -> FileReport:
        return FileReport(path=name, kind=SourceKind.rosbag2, scenario=scenario.name if scenario else None)

    try:
        read = read_bag(path, settings, options.deep)
    except Exception as exc:  # a message that decodes wrongly can fail anywhere inside rosbags; it is a finding
        read = [corrupt_bag(path, f"{type(exc).__name__}: {exc}")]
    if not read or isinstance(read[0], Finding):
        only = report(str(path))
        only.findings.extend(read)  # type: ignore[arg-type]
        return [only]
    out = []
    for piece in read:
        out.append(report(piece.path))  # type: ignore[union-attr]
        try:
            _check(piece, out[-1], settings, options, index)  # type: ignore[arg-type]
        except Exception as exc:  # as above: a finding, not a crash
            out[-1].findings.append(corrupt_bag(path, f"{type(exc).__name__}: {exc}"))
    return out


def _check(piece: BagEpisode, report: FileReport, settings: RecorderSettings, options: ValidateOptions,
           index: InstructionIndex) -> None:
    scan, episode = piece.scan, piece.episode
    report.topics = [c.topic for c in scan.cameras.values()] + [settings.bag.command_topic]
    if len(episode.stamps):
        report.start_ns, report.stop_ns = piece.span
    own = [(scan.instruction(*piece.span), InstructionSource.topic),
           (scan.metadata.get(settings.bag.instruction_metadata_key), InstructionSource.metadata)]
    instruction, source = resolve_instruction(own, Path(piece.path), index, settings, also=piece.bag)
    report.instruction, report.instruction_source = instruction, source
    facts = {
        "path": piece.path,
        "kind": SourceKind.rosbag2,
        "keys": sorted(scan.topics),
        "cameras": dict(zip(scan.cameras, piece.headers, strict=True)),
        "actions": ArrayHeader(key=settings.bag.command_topic, shape=episode.actions.shape, dtype="float32"),
        "action_values": episode.actions,
        "instruction": instruction,
        "instruction_source": source,
        "attributes": dict(scan.metadata),
    }
    if apply_contract(report, facts, episode.actions, settings, options) is None:
        return
    report.findings.extend(_rate_findings(Path(piece.path), scan, piece.span))
    if options.deep:
        report.findings.extend(_deep_findings(piece))
        if not report.ok:
            return
    report.fingerprint = piece.fingerprint(options.deep)


def _deep_findings(piece: BagEpisode) -> list[Finding]:
    """Decode every frame: undecodable pictures, a size other than the first frame's, a frozen camera."""
    findings, path = [], piece.path
    for (name, refs), header in zip(piece.refs.items(), piece.headers, strict=True):
        camera = piece.scan.cameras[name]
        try:
            for i, (frame, _) in enumerate(iter_frames(piece.bag, refs)):
                if frame.shape[:2] != header.shape[1:3]:
                    findings.append(_finding(
                        FindingCode.unsupported_message, path, camera.topic,
                        f"{camera.topic}: frame {i} is {frame.shape[0]}x{frame.shape[1]}, the first is "
                        f"{header.shape[1]}x{header.shape[2]}", "record one frame size per camera and bag"))
                    break
        except (BagError, ValueError) as exc:
            findings.append(_finding(FindingCode.corrupt_file, path, camera.topic,
                                     f"{camera.topic}: a frame cannot be decoded ({exc})",
                                     "the picture data is damaged; re-record the episode or drop it"))
            continue
        index = piece.episode.frames[name]
        repeats = [i for i in range(1, len(index))
                   if index[i] != index[i - 1] and camera.digests[index[i]] == camera.digests[index[i - 1]]]
        if repeats:
            findings.append(_finding(
                FindingCode.frozen_camera, path, camera.topic,
                f"{len(repeats)} frame(s) identical to the one before, first at frame {repeats[0]}",
                "the camera stream stalled while recording; check the camera driver, or drop the episode"))
    return findings
