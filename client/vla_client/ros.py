"""ROS 2 messages <-> what ``PolicyClient`` and ``Driver`` take and give, pure numpy.

```python
order = client.metadata["color_orders"][camera]         # "bgr" or "rgb": the order the policy reads raw frames in
frame = image_to_array(image_msg, order)                 # sensor_msgs/Image -> (H, W, 3) uint8
frame = compressed_to_frame(compressed_msg)              # sensor_msgs/CompressedImage -> encoded jpeg/png, as is
command = driver.tick({camera: frame})                   # (A,)
publisher.publish(fill_twist(Twist(), command, client.metadata["action_names"]))
```
The messages are read and written by their fields only (duck-typed): an rclpy message, a rosbags message or any
object with the same fields works, and nothing here imports rclpy, rosbags or cv2. Array fields (``data``) may be
``bytes``, ``array.array('B')`` (rclpy), a uint8 numpy array (rosbags) or a list of ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_client.protocol import EncodedFrame, encoded

COLOR_ORDERS = ("bgr", "rgb")
# encoding -> (bytes per pixel, the channel order of its first three channels; None: one grey channel)
IMAGE_ENCODINGS: dict[str, tuple[int, str | None]] = {
    "bgr8": (3, "bgr"), "rgb8": (3, "rgb"), "bgra8": (4, "bgr"), "rgba8": (4, "rgb"), "mono8": (1, None),
}
# an action name -> the Twist field it drives (``msg.linear.x``), in Twist's order
TWIST_FIELDS: dict[str, str] = {
    f"{group}_{axis}": f"{group}.{axis}" for group in ("linear", "angular") for axis in ("x", "y", "z")
}


def _buffer(data: Any) -> np.ndarray:
    """A message's ``uint8[]`` field as a flat uint8 array (a view where the field has the buffer protocol)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else np.asarray(data, np.uint8)
    try:
        return np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except TypeError:  # a list of ints
        return np.asarray(data, np.uint8).reshape(-1)


def image_to_array(msg: Any, color_order: str) -> np.ndarray:
    """A ``sensor_msgs/Image`` (bgr8, rgb8, bgra8, rgba8 or mono8) -> a new (H, W, 3) uint8 array in
    ``color_order`` ("bgr" or "rgb"; ``client.metadata["color_orders"][camera]``). Row padding (``step`` beyond
    width * channels) is dropped, alpha is dropped, mono is replicated to three channels; ``is_bigendian`` does
    not matter for 8-bit channels."""
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"colour order {color_order!r}: one of {', '.join(COLOR_ORDERS)}")
    encoding = str(msg.encoding)
    if encoding.lower() not in IMAGE_ENCODINGS:
        raise ValueError(f"image encoding {encoding!r} is not supported: one of {', '.join(IMAGE_ENCODINGS)} "
                         "(convert it, or send a CompressedImage)")
    channels, order = IMAGE_ENCODINGS[encoding.lower()]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * channels
    data = _buffer(msg.data)
    if step < row:
        raise ValueError(f"{encoding} image: step {step} is less than width * {channels} = {row}")
    if data.size < step * (height - 1) + row:
        raise ValueError(f"{encoding} image: {data.size} bytes of data for {height} rows of step {step}")
    if height == 0 or width == 0:
        return np.zeros((height, width, 3), np.uint8)
    pixels = np.lib.stride_tricks.as_strided(data, (height, width, channels), (step, channels, 1), writeable=False)
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    rgb_or_bgr = pixels[..., :3]
    if order != color_order:
        rgb_or_bgr = rgb_or_bgr[..., ::-1]
    return np.array(rgb_or_bgr, np.uint8, order="C")  # a copy: the message's buffer may be reused


def compressed_format(text: str) -> str:
    """A ``sensor_msgs/CompressedImage`` ``format`` as ROS writes it ("jpeg", "png", "bgr8; jpeg compressed bgr8",
    "rgb8; png compressed"...) -> "jpeg" or "png". A depth image ("compressedDepth") or an unknown format is
    refused (ValueError)."""
    words = set(text.lower().replace(";", " ").split())
    if "compresseddepth" in words:
        raise ValueError(f"compressed image format {text!r}: compressedDepth images are depth, not a camera frame")
    found = {"jpeg" if w in ("jpeg", "jpg") else w for w in words if w in ("jpeg", "jpg", "png")}
    if len(found) != 1:
        raise ValueError(f"compressed image format {text!r}: expected jpeg or png "
                         "(e.g. 'jpeg', 'bgr8; jpeg compressed bgr8', 'rgb8; png compressed')")
    return found.pop()


def compressed_to_frame(msg: Any) -> EncodedFrame:
    """A ``sensor_msgs/CompressedImage`` -> ``protocol.encoded("jpeg" | "png", data)``, its bytes as they are (the
    server decodes them); its format read by ``compressed_format``."""
    return encoded(compressed_format(str(msg.format)), _buffer(msg.data).tobytes())


def to_frame(msg: Any, color_order: str) -> np.ndarray | EncodedFrame:
    """Either image message -> a frame for ``PolicyClient.step``: a CompressedImage (it has ``format``) passes
    through encoded, an Image is converted to ``color_order``."""
    return compressed_to_frame(msg) if hasattr(msg, "format") else image_to_array(msg, color_order)


def action_to_twist_fields(action: Sequence[float] | np.ndarray, action_names: Sequence[str]) -> dict[str, float]:
    """An (A,) action row named by ``action_names`` (linear_x, ..., angular_z) -> every Twist field,
    ``{"linear.x": ..., ..., "angular.z": ...}``, 0.0 where no action drives it."""
    values = np.asarray(action, np.float64).reshape(-1)
    names = list(action_names)
    unknown = [n for n in names if n not in TWIST_FIELDS]
    if unknown:
        raise ValueError(f"action name(s) {', '.join(map(repr, unknown))} are not Twist fields: "
                         f"one of {', '.join(TWIST_FIELDS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"action names {names} name a Twist field twice")
    if values.size != len(names):
        raise ValueError(f"an action of {values.size} values for {len(names)} action names {names}")
    fields = dict.fromkeys(TWIST_FIELDS.values(), 0.0)
    for name, value in zip(names, values.tolist(), strict=True):
        fields[TWIST_FIELDS[name]] = float(value)
    return fields


def fill_twist(twist_msg: Any, action: Sequence[float] | np.ndarray, action_names: Sequence[str]) -> Any:
    """Set every field of a ``geometry_msgs/Twist`` (``msg.linear.x = ...``) from the action row (0.0 where no
    action drives it, see ``action_to_twist_fields``); returns the message."""
    for key, value in action_to_twist_fields(action, action_names).items():
        group, axis = key.split(".")
        setattr(getattr(twist_msg, group), axis, value)
    return twist_msg
