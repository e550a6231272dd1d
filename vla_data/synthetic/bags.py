"""Synthetic episodes as ROS 2 bags (``make-synthetic --format rosbag2``): the same learnable scenes as the HDF5
episodes, recorded the way ``ros2 bag record /camera/image_raw /cmd_vel`` records a keyboard teleop.

Timing follows the HDF5 collector: on each key press the command is published, then the frame is grabbed
(``COMMAND_LEAD`` earlier), so the bag aligns back to exactly the HDF5 episode's action rows (row 0, the
``episode_start``, has no command before it: zero). The episodes vary the way real bags do: sqlite3 and MCAP
storage, sensor_msgs/Image bgr8 and CompressedImage jpeg, the instruction on a topic, in the bag's metadata,
in ``dataset_index.csv`` or only in the bag's name.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image
from rosbags.rosbag2 import StoragePlugin, Writer

from schemas import RecorderSettings
from schemas.bags import COMPRESSED_TYPE, IMAGE_TYPE, STRING_TYPE, TWIST_TYPE
from vla_data.sources.bags import TYPESTORE

COMMAND_LEAD_NS = 20_000_000  # the command goes out this long before its frame is grabbed
START_NS = 1_762_419_600 * 1_000_000_000  # 2025-11-06 09:00 UTC, the first synthetic recording


class Storage(StrEnum):
    sqlite3 = "sqlite3"
    mcap = "mcap"


class InstructionPlace(StrEnum):
    topic = "topic"
    metadata = "metadata"
    none = "none"  # the CSV or the bag's name gives it


@dataclass(frozen=True)
class BagStyle:
    """How one synthetic episode is recorded as a bag."""

    storage: Storage = Storage.sqlite3
    compressed: bool = False  # CompressedImage jpeg instead of Image bgr8
    instruction: InstructionPlace = InstructionPlace.topic
    period_ns: int = 200_000_000  # between frames (key presses)
    start_ns: int = START_NS

    @classmethod
    def of(cls, index: int, instruction: InstructionPlace) -> BagStyle:
        """The style of the index-th synthetic episode: storage and image type take turns."""
        return cls(storage=(Storage.sqlite3, Storage.mcap)[index % 2], compressed=(index // 2) % 2 == 1,
                   instruction=instruction, start_ns=START_NS + index * 600_000_000_000)


def _stamp(ns: int) -> object:
    return TYPESTORE.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(ns: int, frame_id: str) -> object:
    return TYPESTORE.types["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=frame_id)


def image_message(rgb: np.ndarray, ns: int, compressed: bool, encoding: str = "bgr8") -> tuple[str, bytes]:
    """(message type, CDR bytes) of one RGB frame as a camera driver publishes it: Image in ``encoding``
    (bgr8, rgb8 or mono8), or CompressedImage jpeg (quality 90)."""
    if compressed:
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, format="JPEG", quality=90)
        msg = TYPESTORE.types[COMPRESSED_TYPE](header=_header(ns, "camera"), format="jpeg",
                                               data=np.frombuffer(out.getvalue(), np.uint8))
        return COMPRESSED_TYPE, TYPESTORE.serialize_cdr(msg, COMPRESSED_TYPE)
    pixels = {"bgr8": rgb[..., ::-1], "rgb8": rgb, "mono8": rgb[..., :1]}[encoding]
    h, w, c = pixels.shape
    msg = TYPESTORE.types[IMAGE_TYPE](header=_header(ns, "camera"), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=w * c, data=np.ascontiguousarray(pixels).reshape(-1))
    return IMAGE_TYPE, TYPESTORE.serialize_cdr(msg, IMAGE_TYPE)


def twist_message(row: np.ndarray, fields: tuple[str, ...]) -> bytes:
    """A geometry_msgs/Twist with ``row``'s values in ``fields`` (e.g. linear.x), zero elsewhere."""
    vector = TYPESTORE.types["geometry_msgs/msg/Vector3"]
    values = {f: 0.0 for f in ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")}
    values.update({f: float(v) for f, v in zip(fields, row, strict=True)})
    msg = TYPESTORE.types[TWIST_TYPE](
        linear=vector(x=values["linear.x"], y=values["linear.y"], z=values["linear.z"]),
        angular=vector(x=values["angular.x"], y=values["angular.y"], z=values["angular.z"]))
    return TYPESTORE.serialize_cdr(msg, TWIST_TYPE)


def string_message(text: str) -> bytes:
    return TYPESTORE.serialize_cdr(TYPESTORE.types[STRING_TYPE](data=text), STRING_TYPE)


def write_bag(path: Path, frames: list[np.ndarray], actions: np.ndarray, instruction: str | None, style: BagStyle,
              settings: RecorderSettings = RecorderSettings()) -> Path:
    """Record one episode as a bag folder at ``path`` (written beside it and renamed into place, never
    half-written, never over anything): ``frames`` holds each camera's (T, H, W, 3) RGB frames in the settings'
    camera order, on the cameras' topics (the first camera as ``style`` says, further ones Image rgb8); frame t
    at ``start + t * period``, action row t (t >= 1) published ``COMMAND_LEAD`` before it; the instruction on
    the instruction topic or in the metadata as ``style`` says."""
    bag = settings.bag
    if path.exists():
        raise FileExistsError(f"{path} exists; a bag is never written over anything")
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    scratch.mkdir(parents=True)
    tmp = scratch / path.name  # rosbags names the storage file after the bag folder
    plugin = {Storage.sqlite3: StoragePlugin.SQLITE3, Storage.mcap: StoragePlugin.MCAP}[style.storage]
    topics = list(settings.camera_topics.values())
    try:
        with Writer(tmp, version=9, storage_plugin=plugin) as writer:
            kinds = [COMPRESSED_TYPE if style.compressed and i == 0 else IMAGE_TYPE for i in range(len(frames))]
            cameras = [writer.add_connection(t, k, typestore=TYPESTORE) for t, k in zip(topics, kinds, strict=True)]
            command = writer.add_connection(bag.command_topic, TWIST_TYPE, typestore=TYPESTORE)
            if instruction is not None and style.instruction == InstructionPlace.topic:
                said = writer.add_connection(bag.instruction_topic, STRING_TYPE, typestore=TYPESTORE)
                writer.write(said, style.start_ns - 2 * COMMAND_LEAD_NS, string_message(instruction))
            if instruction is not None and style.instruction == InstructionPlace.metadata:
                writer.set_custom_data(bag.instruction_metadata_key, instruction)
            for t in range(len(actions)):
                at = style.start_ns + t * style.period_ns
                if t > 0:
                    writer.write(command, at - COMMAND_LEAD_NS, twist_message(actions[t], settings.command_fields))
                for i, (connection, camera_frames) in enumerate(zip(cameras, frames, strict=True)):
                    compressed = style.compressed and i == 0
                    encoding = "bgr8" if i == 0 else "rgb8"
                    writer.write(connection, at, image_message(camera_frames[t], at, compressed, encoding)[1])
        os.rename(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path
