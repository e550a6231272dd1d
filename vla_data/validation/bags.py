"""Checking a ROS 2 bag as a source episode: the same contract as an HDF5 episode (``schemas.recorder``), with
the findings only a bag can have (a topic missing, an unreadable message type or encoding, no commands, stamps
out of order, dropped frames, cameras at different rates).

The default pass reads the bag's metadata and the messages of the topics the episode needs, and decodes no
image; ``deep`` decodes every frame. ``check_bag`` never raises; ``read_bag_episode`` is what a build reads.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from schemas import (
    ArrayHeader,
    FileReport,
    Finding,
    FindingCode,
    InstructionSource,
    RawEpisode,
    RecorderSettings,
    Scenario,
    SourceKind,
    ValidateOptions,
)
from schemas.bags import (
    CAMERA_TYPES,
    COMMAND_TYPES,
    COMPRESSED_TYPE,
    EVENT_END,
    EVENT_START,
    STRING_TYPE,
    EpisodeCut,
)
from schemas.fixes import Fix
from vla_data.sources.bags import (
    BAG_METADATA,
    AlignedEpisode,
    BagError,
    BagScan,
    FrameRefs,
    bag_topics,
    compressed_size,
    episodes_of,
    iter_frames,
    open_bag,
    part_path,
    scan_bag,
    split_part,
)
from vla_client.protocol import ENCODINGS
from vla_client.ros import IMAGE_ENCODINGS, compressed_format
from vla_data.sources.hdf5 import InstructionIndex, fingerprint, resolve_instruction
from vla_data.common.resize import to_rgb


_finding = Finding.of


def _corrupt(path: Path, why: str) -> Finding:
    return _finding(FindingCode.corrupt_file, path, None, f"cannot be read as a ROS 2 bag: {why}",
                    "the bag is truncated or damaged (a recording cut off, a copy interrupted); copy it again from "
                    "the robot, or `ros2 bag reindex` it")


def _closest(wanted: str, topics: dict[str, tuple[str, int]], types: tuple[str, ...]) -> str | None:
    """The topic most likely meant: the only one of a fitting type, else the closest name of a fitting type,
    else the closest name."""
    fitting = [t for t, (kind, _) in topics.items() if kind in types]
    if len(fitting) == 1:
        return fitting[0]
    found = difflib.get_close_matches(wanted, fitting, n=1, cutoff=0.3) or difflib.get_close_matches(
        wanted, list(topics), n=1, cutoff=0.4)
    return found[0] if found else None


def _topic_findings(path: Path, topics: dict[str, tuple[str, int]], settings: RecorderSettings
                    ) -> tuple[dict[str, str], list[Finding]]:
    """Each camera's topic, and the findings for a camera or command topic missing or of an unreadable type."""
    found, findings = {}, []
    have = ", ".join(f"{t} ({k})" for t, (k, _) in sorted(topics.items())) or "no topics at all"
    wanted = [(name, topic, CAMERA_TYPES, "camera") for name, topic in settings.camera_topics.items()]
    wanted.append((None, settings.bag.command_topic, COMMAND_TYPES, "command"))
    several = len(settings.cameras) > 1
    for name, topic, types, what in wanted:
        label = f"camera {name}: " if several and name else ""
        setting = (f"cameras[{name}].topic" if several else "camera.topic") if name else "bag.command_topic"
        if topic is None:
            findings.append(_finding(FindingCode.topic_missing, path, None, f"{label}no topic given for this camera",
                                     "", Fix({setting: "TOPIC"}, f"(the bag has {have})")))
            continue
        if topic not in topics:
            near = _closest(topic, topics, types)
            findings.append(_finding(
                FindingCode.topic_missing, path, topic,
                f"{label}no topic {topic}" + (f"; found {near} ({topics[near][0]})" if near else f" (the bag has {have})"),
                "", Fix({setting: near or "TOPIC"}, "" if near else f"with the {what} topic this robot records")))
            continue
        kind = topics[topic][0]
        if kind not in types:
            findings.append(_finding(
                FindingCode.unsupported_message, path, topic, f"{label}{topic} is {kind}; a {what} topic is "
                f"{' or '.join(types)}", f"record the {what} as {' or '.join(types)}", Fix({setting: "TOPIC"}, "naming one")))
            continue
        if name is not None:
            found[name] = topic
    return found, findings


def _order_findings(path: Path, topic: str, stamps: list[int], strict: bool) -> list[Finding]:
    """Stamps that go backwards (or repeat, where ``strict``: two frames at one instant)."""
    steps = np.diff(np.asarray(stamps, np.int64))
    bad = np.flatnonzero(steps <= 0) if strict else np.flatnonzero(steps < 0)
    if len(bad) == 0:
        return []
    back, same = int((steps < 0).sum()), int((steps == 0).sum()) if strict else 0
    what = ", ".join(p for p in (f"{back} go backwards" if back else "", f"{same} repeat" if same else "") if p)
    return [_finding(FindingCode.stamps_out_of_order, path, topic,
                     f"{topic}: of {len(stamps)} stamps {what}, first at message {int(bad[0]) + 1}",
                     "frames and commands are aligned by stamp; if the header stamps are wrong (a driver that does "
                     "not fill them):", Fix({"bag.stamp": "receive"}, "to use the time the recorder received each message"))]


def _encoding_findings(path: Path, scan: BagScan) -> list[Finding]:
    findings = []
    for name, camera in scan.cameras.items():
        if camera.msgtype == COMPRESSED_TYPE:
            bad = sorted(e for e in camera.encodings if not _readable_format(e))
            supported = f"CompressedImage formats {', '.join(ENCODINGS)}"
        else:
            bad = sorted(e for e in camera.encodings if e.lower() not in IMAGE_ENCODINGS)
            supported = f"Image encodings {', '.join(IMAGE_ENCODINGS)}"
        if bad:
            findings.append(_finding(FindingCode.unsupported_message, path, camera.topic,
                                     f"{camera.topic}: encoding {', '.join(map(repr, bad))} cannot be read",
                                     f"record 8-bit colour frames ({supported})"))
        if len(camera.sizes) > 1:
            findings.append(_finding(FindingCode.unsupported_message, path, camera.topic,
                                     f"{camera.topic}: the frame size changes within the bag "
                                     f"({', '.join(f'{h}x{w}' for h, w in sorted(camera.sizes))})",
                                     "record one frame size per camera and bag"))
    return findings


def _readable_format(text: str) -> bool:
    """A CompressedImage format the decoder reads (the robot client's own rule, ``compressed_format``)."""
    try:
        compressed_format(text)
    except ValueError:
        return False
    return True


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


def _headers(scan: BagScan, n_frames: int) -> list[ArrayHeader]:
    """Each camera's frames as an array header (T, H, W, 3) uint8, H and W from the messages (a CompressedImage's
    from its first picture's header)."""
    out = []
    for camera in scan.cameras.values():
        if camera.sizes:
            h, w = next(iter(camera.sizes))
        elif camera.first_raw is not None:
            h, w = compressed_size(camera.first_raw)
        else:
            h, w = 0, 0
        out.append(ArrayHeader(key=camera.topic, shape=(n_frames, h, w, 3), dtype="uint8"))
    return out


@dataclass
class BagEpisode:
    """One episode of a bag (the bag, or a piece of a cut bag): everything validation reports and a build needs."""

    path: str  # the episode's name: the bag's path, or BAG#k
    bag: Path
    scan: BagScan
    episode: AlignedEpisode
    headers: list[ArrayHeader]
    findings: list[Finding]  # its warnings from the bag's streams (dropped frames, camera rates)

    @property
    def refs(self) -> dict[str, FrameRefs]:
        return self.episode.refs(self.scan)

    def rgb_frames(self) -> dict[str, np.ndarray]:
        """Each camera's (T, H, W, 3) frames decoded, in RGB (replay: predict and drive)."""
        return {name: np.stack([to_rgb(frame, order) for frame, order in iter_frames(self.bag, refs)])
                for name, refs in self.refs.items()}

    @property
    def span(self) -> tuple[int, int]:
        stamps = self.episode.stamps
        return (int(stamps[0]), int(stamps[-1])) if len(stamps) else (0, 0)

    def fingerprint(self, full: bool) -> str:
        """The episode's identity, laid out as ``recorder.fingerprint`` lays out a file's: its action rows and
        each camera's frame shape and pictures: every frame's picture digest when ``full`` (the scan was full);
        else the bag's first picture, and for a piece of a cut bag its first frame's stamp (copies of a bag
        match, its pieces differ)."""
        cameras: list[tuple[ArrayHeader, Iterable[bytes]]] = []
        for header, (name, index) in zip(self.headers, self.episode.frames.items(), strict=True):
            digests = self.scan.cameras[name].digests
            if full:
                cameras.append((header, [digests[i] for i in index.tolist()]))
            else:
                start = [] if self.episode.part is None else [str(self.span[0]).encode()]
                cameras.append((header, [digests[0], *start]))
        return fingerprint(self.episode.actions, cameras)


def read_bag(path: Path, settings: RecorderSettings, full: bool) -> list[BagEpisode] | list[Finding]:
    """The bag's episodes (one, or the pieces ``settings.bag.cut`` makes), or the findings that stop the bag
    giving any (missing topics, unreadable types or encodings, stamps out of order, no commands, a damaged bag).
    The bag is opened once. ``full``: every picture digested (a build's identity, the deep pass), else only the
    first."""
    if _unfinished(path):
        return [_finding(
            FindingCode.corrupt_file, path, None,
            f"looks like a ros2 bag recording that has not finished: {path.name} in {path.parent.name}/ without "
            f"its {BAG_METADATA}", "wait until `ros2 bag record` has stopped (it writes metadata.yaml last), or "
            f"`ros2 bag reindex {path.parent}` a recording that was killed")]
    try:
        with open_bag(path) as reader:
            scanned = _scan(reader, path, settings, full)
    except BagError as exc:
        return [_corrupt(path, str(exc))]
    return scanned if isinstance(scanned, list) else _episodes(path, scanned, settings)


def _unfinished(path: Path) -> bool:
    """A lone .mcap named as ros2 bag record names its storage files (FOLDER/FOLDER_0.mcap): its recording has
    not written metadata.yaml yet, or was killed."""
    name = path.parent.name
    return path.is_file() and path.stem.startswith(f"{name}_") and path.stem[len(name) + 1:].isdigit()


def _scan(reader: Reader, path: Path, settings: RecorderSettings, full: bool) -> BagScan | list[Finding]:
    """The bag's messages, once its topics are those the settings name, of readable types."""
    topics = bag_topics(reader)
    camera_topics, findings = _topic_findings(path, topics, settings)
    bag = settings.bag
    if len(settings.command_fields) != settings.action_dim:
        findings.append(_finding(
            FindingCode.unsupported_message, path, bag.command_topic,
            f"{settings.action_dim} action channels asked, and a Twist names {len(settings.command_fields)} by default",
            "", Fix({"bag.command_fields": ",".join(["FIELD"] * settings.action_dim)},
                    f"({settings.action_dim} Twist fields, e.g. linear.x,linear.y,angular.z)")))
    if bag.cut == EpisodeCut.events and bag.events_topic not in topics:
        near = _closest(bag.events_topic, topics, (STRING_TYPE,))
        findings.append(_finding(
            FindingCode.topic_missing, path, bag.events_topic, f"no events topic {bag.events_topic}"
            + (f"; found {near}" if near else ""), "", Fix({"bag.events_topic": near or "TOPIC"}),
            Fix({"bag.cut": "gap"}), Fix({"bag.cut": "bag"})))
    return findings or scan_bag(reader, path, settings, camera_topics, full)


def _episodes(path: Path, scan: BagScan, settings: RecorderSettings) -> list[BagEpisode] | list[Finding]:
    """The scanned bag's episodes, or the findings that stop it giving any."""
    bag = settings.bag
    findings = _encoding_findings(path, scan)
    for camera in scan.cameras.values():
        if not camera.stamps:
            findings.append(_finding(FindingCode.empty_episode, path, camera.topic,
                                     f"no message on {camera.topic}: the camera recorded no frame",
                                     "check the camera driver and that the topic was recorded, or drop the bag"))
        findings += _order_findings(path, camera.topic, camera.stamps, strict=True)
    findings += _order_findings(path, bag.command_topic, scan.command_stamps, strict=False)
    if not scan.commands:
        findings.append(_finding(
            FindingCode.no_commands, path, bag.command_topic,
            f"no message on {bag.command_topic}: every action would be zero (the robot never moved)",
            "check that the command topic was recorded (`ros2 bag record ... /cmd_vel`)",
            Fix({"bag.command_topic": "TOPIC"})))
    if findings:
        return findings
    episodes = episodes_of(scan, settings, settings.action_dim)
    if not episodes:
        return [_finding(FindingCode.empty_episode, path, bag.events_topic,
                         f"cut by {bag.cut.value}, the bag gives no episode with frames",
                         f"check the {bag.events_topic} messages ({EVENT_START} / {EVENT_END})", Fix({"bag.cut": "bag"}))]
    out = []
    for e in episodes:
        piece = BagEpisode(part_path(path, e.part), path, scan, e, _headers(scan, len(e.stamps)), [])
        piece.findings = _rate_findings(Path(piece.path), scan, piece.span)
        out.append(piece)
    return out


def bag_episode(path: Path, settings: RecorderSettings, full: bool = True) -> BagEpisode | list[Finding]:
    """The one episode at ``path``: a bag that is one episode, or BAG#k of a cut bag; or the findings that
    stop it (an episode number the bag does not have among them). ``full`` as for ``read_bag``."""
    return pick_episode(path, read_bag(split_part(path)[0], settings, full))


def pick_episode(path: Path, read: list[BagEpisode] | list[Finding]) -> BagEpisode | list[Finding]:
    """The episode ``path`` names among a bag's ``read_bag`` result, or the findings why there is none."""
    if read and isinstance(read[0], Finding):
        return read  # type: ignore[return-value]
    episodes: list[BagEpisode] = read  # type: ignore[assignment]
    names = [e.path for e in episodes]
    if str(path) in names:
        return episodes[names.index(str(path))]
    listed = ", ".join(names[:3]) + (f" ... ({len(names)})" if len(names) > 3 else "")
    return [_finding(FindingCode.empty_episode, path, None, f"{path} names no episode of the bag; it gives {listed}",
                     "name one of them (BAG#k for the k-th episode of a cut bag)")]


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
        read = [_corrupt(path, f"{type(exc).__name__}: {exc}")]
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
            out[-1].findings.append(_corrupt(path, f"{type(exc).__name__}: {exc}"))
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
    raw, errors = RawEpisode.findings_for(facts, settings)
    report.findings.extend(errors)
    if raw is None:
        return
    report.n_frames, report.frame_size, report.frame_sizes = raw.n_frames, raw.frame_size, raw.frame_sizes
    if episode.actions.size:
        report.action_min = episode.actions.min(axis=0).astype(float).tolist()
        report.action_max = episode.actions.max(axis=0).astype(float).tolist()
    report.findings.extend(raw.warnings(settings, options.window))
    report.findings.extend(piece.findings)
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
