"""A ROS 2 bag as a source: its episodes (the whole bag, or the pieces a cut makes), each with its actions, its
frames (lazy, by message reference) and its content hash; or the findings that stop the bag giving any (a topic
missing, an unreadable message type or encoding, stamps out of order, no commands, a damaged or unfinished
recording).

``read_bag`` opens a bag once and reads the messages of the topics an episode needs (``vla_data.sources.bags``);
``BAGS`` is the bag format for ``vla_data.sources``. The findings that only describe a readable episode (dropped
frames, camera rates, the deep pass) are validation's (``vla_data.validation.bags``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from schemas import ArrayHeader, ColorOrder, Finding, FindingCode, RecorderSettings, SourceKind
from schemas.fixes import Fix
from schemas.bags import CAMERA_TYPES, COMMAND_TYPES, COMPRESSED_TYPE, EVENT_END, EVENT_START, STRING_TYPE, EpisodeCut
from vla_client.protocol import ENCODINGS
from vla_client.ros import IMAGE_ENCODINGS, compressed_format
from vla_data.common.resize import to_rgb
from vla_data.sources.bags import (
    BAG_METADATA,
    DB3_SUFFIX,
    AlignedEpisode,
    BagError,
    BagScan,
    FrameRefs,
    bag_topics,
    compressed_size,
    episodes_of,
    is_bag,
    iter_frames,
    open_bag,
    part_path,
    scan_bag,
    split_part,
)
from vla_data.sources.content_hash import fingerprint
from vla_data.sources.episode import Frames, SourceEpisode, SourceError

_finding = Finding.of


def corrupt_bag(path: Path, why: str) -> Finding:
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

    @property
    def refs(self) -> dict[str, FrameRefs]:
        return self.episode.refs(self.scan)

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
        return [corrupt_bag(path, str(exc))]
    return scanned if isinstance(scanned, list) else _episodes(path, scanned, settings)


def _unfinished(path: Path) -> bool:
    """A lone storage file named as ros2 bag record names them (FOLDER/FOLDER_0.mcap or .db3), or any lone .db3
    (sqlite3 bags never read without metadata.yaml): its recording has not written metadata.yaml yet, or was
    killed."""
    name = path.parent.name
    if path.is_file() and path.suffix.lower() == DB3_SUFFIX:
        return True
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
    return [BagEpisode(part_path(path, e.part), path, scan, e, _headers(scan, len(e.stamps))) for e in episodes]


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


@dataclass(frozen=True)
class BagFrames:
    """One camera's frames of a bag episode: the messages that are its frames, decoded when read."""

    bag: Path
    refs: FrameRefs

    def read(self, start: int, stop: int) -> Frames:
        """Frames [start, stop) in their messages' colour order (one order: a topic's messages share it), else RGB."""
        decoded = list(iter_frames(self.bag, FrameRefs(self.refs.topic, self.refs.refs[start:stop])))
        orders = {order for _, order in decoded}
        if len(orders) == 1:
            return Frames(np.stack([frame for frame, _ in decoded]), orders.pop())
        return Frames(np.stack([to_rgb(frame, order) for frame, order in decoded]), ColorOrder.rgb)


class BagFormat:
    """ROS 2 bags: a rosbag2 folder or a lone .mcap file; one episode, or several when cut (BAG#k)."""

    kind = SourceKind.rosbag2

    def claims(self, path: Path) -> bool:
        return is_bag(path)

    def source_of(self, ref: str) -> Path | None:
        bag, _ = split_part(ref)
        return bag if is_bag(bag) else None

    def read(self, source: Path, settings: RecorderSettings, identify: bool) -> list[SourceEpisode]:
        read = read_bag(source, settings, full=identify)
        if read and isinstance(read[0], Finding):
            raise SourceError.of(source, read[0])
        return [SourceEpisode(piece.path, SourceKind.rosbag2, piece.episode.actions,
                              {name: BagFrames(piece.bag, refs) for name, refs in piece.refs.items()},
                              piece.fingerprint(full=True) if identify else None, piece.episode.stamps)
                for piece in read]  # type: ignore[union-attr]


BAGS = BagFormat()
