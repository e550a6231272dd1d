"""Reading ROS 2 bags (rosbag2, sqlite3 or MCAP storage; a bag folder or one ``.mcap`` file) with ``rosbags``:
pure Python and the real message definitions, no ROS install.

``scan_bag`` reads the messages of the topics an episode needs once, in bag order, and decodes no image (the
deep pass and the build decode them): every camera message's stamp, encoding and size, every command, the
instruction. ``align`` turns that into an episode: frames are the clock (the first camera's frames, at most
``fps`` per second), each further camera's frame is its last at or before the clock frame, and each frame's
action row is the last command at or before its stamp (zero before the first command and after the command
timeout), the rule of ``schemas.bags``; ``episodes_of`` cuts the aligned bag into its episodes (the whole bag,
at events or at pauses in the commands). ``iter_frames`` decodes the frames a store shard needs.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from schemas import ColorOrder, RecorderSettings
from schemas.bags import (
    COMPRESSED_TYPE,
    EVENT_END,
    EVENT_START,
    PART_MARK,
    STRING_TYPE,
    TWIST_STAMPED_TYPE,
    EpisodeCut,
    StampSource,
)
from vla_client.preprocess import decode_rgb
from vla_client.ros import compressed_to_frame, image_to_array

BAG_METADATA = "metadata.yaml"
MCAP_SUFFIX = ".mcap"
DB3_SUFFIX = ".db3"
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)  # sensor_msgs, geometry_msgs, std_msgs as every ROS 2 distro has them


class BagError(Exception):
    """A bag that cannot be read: its metadata or its storage is damaged or truncated."""


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (it holds metadata.yaml), or one MCAP or sqlite3 (.db3) file outside such a folder: an
    MCAP file reads alone; a lone .db3 is a recording not finished (or killed), claimed so that it is refused
    with its fix rather than skipped without a word."""
    if path.is_dir():
        return (path / BAG_METADATA).is_file()
    return (path.suffix.lower() in (MCAP_SUFFIX, DB3_SUFFIX) and path.is_file()
            and not (path.parent / BAG_METADATA).is_file())


@contextmanager
def open_bag(path: Path) -> Iterator[Reader]:
    """The bag opened for reading; anything rosbags or the storage raises on opening is a ``BagError``."""
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags, sqlite3, the MCAP parser and YAML raise many kinds for a damaged bag
        raise BagError(_why(exc)) from exc
    try:
        yield reader
    finally:
        reader.close()


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def bag_topics(reader: Reader) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) from the bag's metadata (no message read)."""
    out: dict[str, tuple[str, int]] = {}
    for c in reader.connections:
        kind, count = out.get(c.topic, (c.msgtype, 0))
        out[c.topic] = (kind, count + int(c.msgcount))
    return out


def custom_metadata(reader: Reader) -> dict[str, str]:
    """The bag's custom_data (``ros2 bag record --custom-data`` / ``Writer.set_custom_data``), or {}."""
    meta = getattr(reader.storage, "metadata", None)
    return dict(getattr(meta, "custom", None) or {})


def stamp_ns(msg: Any) -> int:
    """A message's header stamp in ns (0 where it has none)."""
    header = getattr(msg, "header", None)
    if header is None:
        return 0
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class CameraScan:
    """One camera topic's messages in bag order: stamps, receive times, what each image is, and digests."""

    topic: str
    msgtype: str
    stamps: list[int] = field(default_factory=list)  # the chosen clock (header stamp, else the receive time)
    receive: list[int] = field(default_factory=list)  # the bag's timestamps
    encodings: set[str] = field(default_factory=set)  # Image encodings / CompressedImage formats seen
    sizes: set[tuple[int, int]] = field(default_factory=set)  # (H, W) of Image messages
    first_raw: bytes | None = None  # the first message's CDR bytes (its picture's size, for CompressedImage)
    digests: list[bytes] = field(default_factory=list)  # sha256 of each message's picture (full scans; else the first)


@dataclass
class BagScan:
    """What a bag holds for one recorder: each camera topic, the commands, the instruction found."""

    path: Path
    topics: dict[str, tuple[str, int]]
    cameras: dict[str, CameraScan]  # by camera name
    command_stamps: list[int] = field(default_factory=list)
    commands: list[list[float]] = field(default_factory=list)
    instructions: list[tuple[int, str]] = field(default_factory=list)  # (stamp, text) on the instruction topic
    events: list[tuple[int, str]] = field(default_factory=list)  # (stamp, text) on the events topic (cut=events)
    metadata: dict[str, str] = field(default_factory=dict)

    def instruction(self, start: int, stop: int) -> str | None:
        """The instruction of the episode of frames [start, stop] (ns): the first one said within it, else
        the last one said before it."""
        within = [text for at, text in self.instructions if start <= at <= stop]
        before = [text for at, text in self.instructions if at < start]
        return within[0] if within else before[-1] if before else None


def picture_digest(msg: Any, encoding: str) -> bytes:
    """sha256 of what makes a camera message's picture: its encoding (or format) and its data, not its stamp
    (the data hashed where it lies, not copied)."""
    digest = hashlib.sha256(encoding.encode() + b"\0")
    digest.update(np.ascontiguousarray(msg.data, np.uint8).data)
    return digest.digest()


def _command_row(msg: Any, fields: tuple[str, ...], stamped: bool) -> list[float]:
    twist = msg.twist if stamped else msg
    return [float(getattr(getattr(twist, group), axis)) for group, axis in (f.split(".") for f in fields)]


def scan_bag(reader: Reader, path: Path, settings: RecorderSettings, camera_topics: dict[str, str],
             full: bool) -> BagScan:
    """Read the camera, command, instruction (and, cut=events, events) topics of the open bag once; the caller
    checked that the cameras' and the command's topics exist with readable types. No picture is decoded; each
    camera's first picture is digested, and with ``full`` every one (an episode's identity, frozen frames)."""
    bag = settings.bag
    scan = BagScan(path, bag_topics(reader), {}, metadata=custom_metadata(reader))
    wanted = {camera_topics[n]: n for n in camera_topics}
    scan.cameras = {n: CameraScan(t, scan.topics[t][0]) for t, n in wanted.items()}
    events = {bag.events_topic} if bag.cut == EpisodeCut.events else set()
    read = set(wanted) | {bag.command_topic} | ({bag.instruction_topic, *events} & scan.topics.keys())
    connections = [c for c in reader.connections if c.topic in read]
    try:
        for connection, receive, raw in reader.messages(connections=connections):
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            clock = receive if bag.stamp == StampSource.receive else (stamp_ns(msg) or receive)
            if connection.topic in wanted:
                camera = scan.cameras[wanted[connection.topic]]
                camera.stamps.append(clock)
                camera.receive.append(receive)
                if connection.msgtype == COMPRESSED_TYPE:
                    encoding = str(msg.format)
                else:
                    encoding = str(msg.encoding)
                    camera.sizes.add((int(msg.height), int(msg.width)))
                camera.encodings.add(encoding)
                if camera.first_raw is None:
                    camera.first_raw = bytes(raw)
                if full or not camera.digests:
                    camera.digests.append(picture_digest(msg, encoding))
            elif connection.topic == bag.command_topic:
                scan.command_stamps.append(clock)
                scan.commands.append(_command_row(msg, settings.command_fields, connection.msgtype == TWIST_STAMPED_TYPE))
            elif connection.msgtype == STRING_TYPE and str(msg.data).strip():
                said = scan.events if connection.topic in events else scan.instructions
                said.append((clock, str(msg.data).strip()))
    except Exception as exc:  # a truncated or damaged storage file fails while reading messages
        raise BagError(_why(exc)) from exc
    return scan


@dataclass(frozen=True)
class FrameRefs:
    """Which messages of a camera topic are an episode's frames: per frame, its message's receive time and
    how many earlier messages of the topic share that receive time (so a frame is found again exactly)."""

    topic: str
    refs: tuple[tuple[int, int], ...]


@dataclass
class AlignedEpisode:
    """An episode cut from a bag: its frames (message indices per camera), stamps and action rows."""

    frames: dict[str, np.ndarray]  # camera name -> (T,) index of the camera message that is each frame
    stamps: np.ndarray  # (T,) int64 ns: the clock frames' stamps
    actions: np.ndarray  # (T, A) float32
    part: int | None = None  # k (from 1) of a bag cut into several episodes; None: the bag is one episode

    def piece(self, a: int, b: int, part: int) -> AlignedEpisode:
        """Frames [a, b) as the ``part``-th episode."""
        return AlignedEpisode({n: i[a:b] for n, i in self.frames.items()}, self.stamps[a:b], self.actions[a:b], part)

    def refs(self, scan: BagScan) -> dict[str, FrameRefs]:
        out = {}
        for name, index in self.frames.items():
            camera = scan.cameras[name]
            seen: dict[int, int] = {}
            occurrence = []
            for r in camera.receive:
                occurrence.append(seen.get(r, 0))
                seen[r] = occurrence[-1] + 1
            out[name] = FrameRefs(camera.topic, tuple((camera.receive[i], occurrence[i]) for i in index.tolist()))
        return out


def keep_fps(stamps: np.ndarray, fps: float | None) -> np.ndarray:
    """Indices of the frames kept at no more than ``fps`` per second: a frame is kept when at least 1/fps
    has passed since the last kept one (every frame when ``fps`` is None)."""
    if fps is None or len(stamps) == 0:
        return np.arange(len(stamps))
    period = 1e9 / fps
    kept, last = [0], int(stamps[0])
    for i in range(1, len(stamps)):
        if stamps[i] - last >= period - 1e-3:  # tolerance: a 30 fps camera at --fps 30 keeps every frame
            kept.append(i)
            last = int(stamps[i])
    return np.asarray(kept)


def align_commands(frame_stamps: np.ndarray, command_stamps: np.ndarray, commands: np.ndarray,
                   timeout_s: float) -> np.ndarray:
    """(T, A) action rows: frame t's row is the last command stamped at or before frame t (of equal stamps,
    the last in bag order), zero before the first command and where that command is older than the timeout."""
    t = len(frame_stamps)
    dim = commands.shape[1] if commands.ndim == 2 else 0
    out = np.zeros((t, dim), np.float32)
    if len(command_stamps) == 0 or t == 0:
        return out
    last = np.searchsorted(command_stamps, frame_stamps, side="right") - 1
    fresh = (last >= 0) & (frame_stamps - command_stamps[np.maximum(last, 0)] <= round(timeout_s * 1e9))
    out[fresh] = commands[last[fresh]]
    return out


def align(scan: BagScan, settings: RecorderSettings, action_dim: int) -> AlignedEpisode:
    """The whole bag aligned (the first camera's kept frames as the clock); stamps must be in order (checked
    by validation first)."""
    names = list(scan.cameras)
    clock_all = np.asarray(scan.cameras[names[0]].stamps, np.int64)
    kept = keep_fps(clock_all, settings.bag.fps)
    clock = clock_all[kept]
    frames = {names[0]: kept}
    for name in names[1:]:
        stamps = np.asarray(scan.cameras[name].stamps, np.int64)
        frames[name] = np.maximum(np.searchsorted(stamps, clock, side="right") - 1, 0)
    commands = np.asarray(scan.commands, np.float32).reshape(-1, action_dim)
    actions = align_commands(clock, np.asarray(scan.command_stamps, np.int64), commands, settings.bag.command_timeout_s)
    return AlignedEpisode(frames, clock, actions)


def episode_bounds(scan: BagScan, settings: RecorderSettings, clock: np.ndarray) -> list[tuple[int, int]]:
    """The episodes of a cut bag as ranges [a, b) of its clock frames, by ``settings.bag.cut``: from each
    `episode_start` event to the next start or `episode_end` (frames outside any are no episode's), or cut in
    the middle of every pause in the commands longer than ``gap_s``. Empty ranges are dropped."""
    bag = settings.bag
    if bag.cut == EpisodeCut.events:
        spans, start = [], None
        for at, text in sorted(scan.events, key=lambda e: e[0]):
            word = text.lower()
            if word == EVENT_START:
                if start is not None:
                    spans.append((start, at))
                start = at
            elif word == EVENT_END and start is not None:
                spans.append((start, at + 1))  # a frame at the end event's stamp is the episode's last
                start = None
        if start is not None:
            spans.append((start, int(clock[-1]) + 1 if len(clock) else start))
    else:
        stamps = np.asarray(scan.command_stamps, np.int64)
        pauses = np.flatnonzero(np.diff(stamps) > round(bag.gap_s * 1e9))
        cuts = [int(stamps[i] + (stamps[i + 1] - stamps[i]) // 2) for i in pauses]
        edges = [int(clock[0]) if len(clock) else 0, *cuts, int(clock[-1]) + 1 if len(clock) else 0]
        spans = list(zip(edges[:-1], edges[1:], strict=True))
    ranges = [(int(np.searchsorted(clock, a, "left")), int(np.searchsorted(clock, b, "left"))) for a, b in spans]
    return [(a, b) for a, b in ranges if b > a]


def episodes_of(scan: BagScan, settings: RecorderSettings, action_dim: int) -> list[AlignedEpisode]:
    """The bag's episodes: the whole bag, or (cut) each piece numbered from 1."""
    whole = align(scan, settings, action_dim)
    if settings.bag.cut == EpisodeCut.bag:
        return [whole]
    return [whole.piece(a, b, k) for k, (a, b) in enumerate(episode_bounds(scan, settings, whole.stamps), 1)]


def part_path(bag: Path, part: int | None) -> str:
    """How an episode of a bag is named: the bag's path, or BAG#k for the k-th of a cut bag."""
    return str(bag) if part is None else f"{bag}{PART_MARK}{part}"


def split_part(path: Path | str) -> tuple[Path, int | None]:
    """BAG#k -> (BAG, k) when BAG is a bag; anything else -> (path, None)."""
    text = str(path)
    head, mark, tail = text.rpartition(PART_MARK)
    if mark and tail.isdigit() and int(tail) >= 1 and is_bag(Path(head)):
        return Path(head), int(tail)
    return Path(text), None


def decode_image(msg: Any, msgtype: str) -> tuple[np.ndarray, ColorOrder]:
    """An Image or CompressedImage -> (H, W, 3) uint8 and its colour order (bgr8/bgra8 stay BGR, so they are
    converted exactly as the HDF5 recorder's bgr frames are; CompressedImage is decoded to RGB). Raises
    ValueError for an encoding or data vla-data cannot read."""
    if msgtype == COMPRESSED_TYPE:
        frame = compressed_to_frame(msg)
        try:
            return decode_rgb(frame.data), ColorOrder.rgb
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot decode the {frame.encoding} image ({exc})") from None
    order = ColorOrder.bgr if str(msg.encoding).lower().startswith("bgr") else ColorOrder.rgb
    return image_to_array(msg, order.value), order


def compressed_size(raw: bytes) -> tuple[int, int]:
    """(H, W) of a CompressedImage message's picture, from the image header only."""
    msg = TYPESTORE.deserialize_cdr(raw, COMPRESSED_TYPE)
    with Image.open(io.BytesIO(compressed_to_frame(msg).data)) as image:
        return image.height, image.width


def iter_frames(path: Path, refs: FrameRefs) -> Iterator[tuple[np.ndarray, ColorOrder]]:
    """Each referenced frame decoded, in ``refs`` order (a frame used twice is decoded once)."""
    wanted: dict[tuple[int, int], list[int]] = {}
    for position, ref in enumerate(refs.refs):
        wanted.setdefault(ref, []).append(position)
    receive = sorted(r for r, _ in wanted)
    out: list[tuple[np.ndarray, ColorOrder] | None] = [None] * len(refs.refs)
    with open_bag(path) as reader:
        connections = [c for c in reader.connections if c.topic == refs.topic]
        seen: dict[int, int] = {}
        try:
            messages = reader.messages(connections=connections, start=receive[0], stop=receive[-1] + 1)
            for connection, at, raw in messages:
                occurrence = seen.get(at, 0)
                seen[at] = occurrence + 1
                positions = wanted.get((at, occurrence))
                if positions:
                    frame = decode_image(TYPESTORE.deserialize_cdr(raw, connection.msgtype), connection.msgtype)
                    for p in positions:
                        out[p] = frame
        except BagError:
            raise
        except Exception as exc:
            raise BagError(f"{path}: {refs.topic}: {_why(exc)}") from exc
    missing = [i for i, f in enumerate(out) if f is None]
    if missing:
        raise BagError(f"{path}: {refs.topic}: {len(missing)} frame message(s) not found again (first, frame "
                       f"{missing[0]}); the bag changed since it was validated")
    yield from out  # type: ignore[misc]
