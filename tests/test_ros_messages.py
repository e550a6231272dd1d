"""vla_client.ros against real ROS 2 message types (rosbags' typestore: pure Python, no ROS install)."""

from __future__ import annotations

import array
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PILImage

from vla_client import protocol
from rosbags.typesys import Stores, get_typestore

from vla_client.ros import (
    action_to_twist_fields,
    compressed_to_frame,
    fill_twist,
    image_to_array,
    to_frame,
)

TS = get_typestore(Stores.ROS2_HUMBLE)  # real ROS 2 message definitions, without a ROS install
IMAGE, COMPRESSED, TWIST = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "geometry_msgs/msg/Twist"

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)  # the picture every test encodes, as RGB
BGR = np.ascontiguousarray(RGB[..., ::-1])
ALPHA = RNG.integers(0, 256, (5, 7, 1), dtype=np.uint8)
GREY = RNG.integers(0, 256, (5, 7), dtype=np.uint8)


def header() -> object:
    return TS.types["std_msgs/msg/Header"](stamp=TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2),
                                           frame_id="front")


def image(pixels: np.ndarray, encoding: str, padding: int = 0) -> object:
    """A sensor_msgs/Image of (H, W, C) or (H, W) pixels, each row followed by ``padding`` junk bytes, sent
    through CDR and back as a bag or a subscriber would get it."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    junk = np.full((height, padding), 0xEE, np.uint8)
    data = np.concatenate([rows, junk], axis=1).reshape(-1)
    msg = TS.types[IMAGE](header=header(), height=height, width=width, encoding=encoding, is_bigendian=0,
                          step=rows.shape[1] + padding, data=data)
    return TS.deserialize_cdr(TS.serialize_cdr(msg, IMAGE), IMAGE)


def compressed(fmt: str, data: bytes) -> object:
    msg = TS.types[COMPRESSED](header=header(), format=fmt, data=np.frombuffer(data, np.uint8))
    return TS.deserialize_cdr(TS.serialize_cdr(msg, COMPRESSED), COMPRESSED)


def encode(fmt: str, pixels: np.ndarray = RGB, **options: object) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


def server_decodes(frame: protocol.EncodedFrame) -> np.ndarray:
    """As `vla-data serve` does: the frame over the wire, then Pillow -> RGB."""
    sent = protocol.unpack(protocol.pack({"type": "step", "frames": {"front": frame}}))["frames"]["front"]
    assert sent["encoding"] == frame.encoding
    with PILImage.open(io.BytesIO(sent["data"])) as decoded:
        return np.asarray(decoded.convert("RGB"))


# -- sensor_msgs/Image ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize(("encoding", "pixels"), [
    ("bgr8", BGR), ("rgb8", RGB), ("bgra8", np.concatenate([BGR, ALPHA], 2)),
    ("rgba8", np.concatenate([RGB, ALPHA], 2)),
])
def test_colour_images_in_either_order(encoding: str, pixels: np.ndarray, padding: int) -> None:
    msg = image(pixels, encoding, padding)
    assert msg.step == pixels.shape[1] * pixels.shape[2] + padding
    for order, expected in (("rgb", RGB), ("bgr", BGR)):
        got = image_to_array(msg, order)
        assert got.dtype == np.uint8 and got.shape == (5, 7, 3) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("padding", [0, 1])
def test_mono_is_replicated(padding: int) -> None:
    msg = image(GREY, "mono8", padding)
    for order in ("rgb", "bgr"):
        got = image_to_array(msg, order)
        assert got.shape == (5, 7, 3)
        for c in range(3):
            np.testing.assert_array_equal(got[..., c], GREY)


def test_the_array_is_a_copy() -> None:
    msg = image(RGB, "rgb8")
    assert not msg.data.flags.writeable  # rosbags deserializes uint8[] as a read-only view of the CDR bytes
    msg.data = msg.data.copy()
    got = image_to_array(msg, "rgb")
    msg.data[:] = 0  # a driver reusing its buffer
    np.testing.assert_array_equal(got, RGB)
    assert got.flags.writeable


@pytest.mark.parametrize("data", [bytes, bytearray, lambda b: array.array("B", b), lambda b: list(b)])
def test_rclpy_style_data(data) -> None:
    """rclpy's uint8[] fields are array.array('B'); bytes and lists of ints work the same."""
    raw = np.concatenate([BGR.reshape(5, -1), np.zeros((5, 2), np.uint8)], 1).tobytes()
    msg = SimpleNamespace(height=5, width=7, encoding="bgr8", step=23, is_bigendian=0, data=data(raw))
    np.testing.assert_array_equal(image_to_array(msg, "rgb"), RGB)


@pytest.mark.parametrize("encoding", ["16UC1", "bayer_rggb8", "yuv422", "32FC1"])
def test_unsupported_encoding_is_refused_by_name(encoding: str) -> None:
    msg = image(GREY, "mono8")
    msg.encoding = encoding
    with pytest.raises(ValueError, match=rf"{encoding!r}.*bgr8, rgb8, bgra8, rgba8, mono8"):
        image_to_array(msg, "rgb")


def test_bad_images_are_refused() -> None:
    with pytest.raises(ValueError, match="colour order 'RGB'"):
        image_to_array(image(RGB, "rgb8"), "RGB")
    short = image(RGB, "rgb8")
    short.data = short.data[:-1]
    with pytest.raises(ValueError, match="104 bytes of data for 5 rows of step 21"):
        image_to_array(short, "rgb")
    narrow = image(RGB, "rgb8")
    narrow.step = 20
    with pytest.raises(ValueError, match="step 20 is less than width"):
        image_to_array(narrow, "rgb")


# -- sensor_msgs/CompressedImage -----------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "encoding"), [
    ("jpeg", "jpeg"), ("jpg", "jpeg"), ("bgr8; jpeg compressed bgr8", "jpeg"), ("rgb8; jpeg compressed rgb8", "jpeg"),
    ("png", "png"), ("rgb8; png compressed", "png"), ("bgr8; png compressed bgr8", "png"), ("JPEG", "jpeg"),
])
def test_compressed_passes_through(fmt: str, encoding: str) -> None:
    data = encode("JPEG" if encoding == "jpeg" else "PNG")
    frame = compressed_to_frame(compressed(fmt, data))
    assert isinstance(frame, protocol.EncodedFrame)
    assert frame.encoding == encoding and type(frame.data) is bytes and frame.data == data


def test_a_real_jpeg_decodes_on_the_server_to_the_same_picture() -> None:
    smooth = np.stack([*np.meshgrid(np.arange(64) * 4, np.arange(48) * 5), np.full((48, 64), 99)],
                      axis=-1).astype(np.uint8)
    data = encode("JPEG", smooth, quality=95)
    got = server_decodes(compressed_to_frame(compressed("rgb8; jpeg compressed bgr8", data)))
    with PILImage.open(io.BytesIO(data)) as direct:
        np.testing.assert_array_equal(got, np.asarray(direct.convert("RGB")))  # the same bytes, the same picture
    assert got.shape == smooth.shape
    assert np.abs(got.astype(int) - smooth).mean() < 3  # and it is the picture that was taken (JPEG is lossy)


def test_a_png_decodes_on_the_server_exactly() -> None:
    got = server_decodes(compressed_to_frame(compressed("bgr8; png compressed bgr8", encode("PNG"))))
    np.testing.assert_array_equal(got, RGB)


@pytest.mark.parametrize("fmt", ["", "tiff", "bgr8", "16UC1; compressedDepth png", "png jpeg"])
def test_unknown_compressed_format_is_refused(fmt: str) -> None:
    with pytest.raises(ValueError, match=f"format {fmt!r}"):
        compressed_to_frame(compressed(fmt, encode("PNG")))


def test_to_frame_picks_by_message() -> None:
    np.testing.assert_array_equal(to_frame(image(BGR, "bgr8"), "rgb"), RGB)
    assert to_frame(compressed("png", b"\x89PNG..."), "rgb") == protocol.encoded("png", b"\x89PNG...")


# -- geometry_msgs/Twist -------------------------------------------------------------------------------------

def test_twist_fields_from_an_action_row() -> None:
    assert action_to_twist_fields(np.array([0.5, -1.15], np.float32), ["linear_x", "linear_y"]) == {
        "linear.x": 0.5, "linear.y": -1.149999976158142, "linear.z": 0.0,
        "angular.x": 0.0, "angular.y": 0.0, "angular.z": 0.0}
    fields = action_to_twist_fields([0.25, 1.5], ["linear_x", "angular_z"])
    assert fields == {"linear.x": 0.25, "linear.y": 0.0, "linear.z": 0.0,
                      "angular.x": 0.0, "angular.y": 0.0, "angular.z": 1.5}
    assert all(type(v) is float for v in fields.values())  # rclpy's Vector3 refuses anything but float


def test_bad_action_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'forward' are not Twist fields: one of linear_x, .*angular_z"):
        action_to_twist_fields([1.0, 2.0], ["linear_x", "forward"])
    with pytest.raises(ValueError, match="twice"):
        action_to_twist_fields([1.0, 2.0], ["linear_x", "linear_x"])
    with pytest.raises(ValueError, match="an action of 3 values for 2 action names"):
        action_to_twist_fields([1.0, 2.0, 3.0], ["linear_x", "angular_z"])


@pytest.mark.parametrize(("names", "action", "expected"), [
    (["linear_x", "linear_y"], [0.5, -1.15], (0.5, -1.15, 0.0, 0.0, 0.0, 0.0)),
    (["linear_x", "angular_z"], [-0.3, 0.8], (-0.3, 0.0, 0.0, 0.0, 0.0, 0.8)),
])
def test_fill_twist_survives_cdr(names: list[str], action: list[float], expected: tuple[float, ...]) -> None:
    vector = TS.types["geometry_msgs/msg/Vector3"]
    msg = TS.types[TWIST](linear=vector(x=9.0, y=9.0, z=9.0), angular=vector(x=9.0, y=9.0, z=9.0))
    assert fill_twist(msg, np.array(action, np.float64), names) is msg
    back = TS.deserialize_cdr(TS.serialize_cdr(msg, TWIST), TWIST)
    got = (back.linear.x, back.linear.y, back.linear.z, back.angular.x, back.angular.y, back.angular.z)
    assert got == pytest.approx(expected, abs=0)
    # and the zero Twist a node publishes on shutdown
    zero = TS.deserialize_cdr(TS.serialize_cdr(fill_twist(msg, np.zeros(2), names), TWIST), TWIST)
    assert (zero.linear.x, zero.linear.y, zero.angular.z) == (0.0, 0.0, 0.0)
