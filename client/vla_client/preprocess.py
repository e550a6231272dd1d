"""Turning a camera frame into what the policy reads: one resize to S x S (Pillow), then RGB.

This is the one implementation of the rule: the store's build (``vla_data.common.resize``), ``PolicyRunner``
and the robot's ``LocalPolicy`` all call it, so the robot prepares a frame exactly as training stored it.
Needs Pillow (vla-data has it; the robot client's ``onnx`` extra installs it).
"""

from __future__ import annotations

import io
from types import ModuleType

import numpy as np

RESIZE_MODES = ("squash", "letterbox", "center-crop")
FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "BOX"}  # area: the mean of the source pixels covered


def pillow() -> ModuleType:
    """PIL.Image, or an ImportError that says how to install it (the robot client's onnx extra brings it)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(f"preparing frames needs Pillow ({exc.name} is missing): "
                          'pip install "vla-data-client[onnx]"') from exc
    return Image


def decode_rgb(data: bytes) -> np.ndarray:
    """JPEG or PNG bytes -> (H, W, 3) uint8 RGB. Pillow's own errors (``UnidentifiedImageError``, ``OSError``) for
    bytes that are not a picture: each caller says what they were."""
    with pillow().open(io.BytesIO(data)) as image:
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def to_rgb(frame: np.ndarray, order: str) -> np.ndarray:
    """A frame in colour ``order`` ("bgr" or "rgb") as RGB (a view; its own inverse)."""
    return frame[..., ::-1] if order == "bgr" else frame


def resize_frame(frame: np.ndarray, size: int, resize: str, interpolation: str, order: str) -> np.ndarray:
    """(H, W, 3) uint8 in colour ``order`` -> (S, S, 3) uint8 RGB: ``resize`` squash (stretch to S x S),
    letterbox (fit, pad with black) or center-crop (cover, cut the long side), with ``interpolation``.

    Resizing treats each channel alone, so the frame is resized in its own order and only the S x S
    result is turned into RGB: the same pixels as converting first, without copying the full frame.
    """
    Image = pillow()  # noqa: N806 (the module, named as PIL names it)
    image = Image.fromarray(np.ascontiguousarray(frame))
    s, (w, h), resample = size, image.size, getattr(Image.Resampling, FILTERS[interpolation])
    if resize == "squash":
        out = image.resize((s, s), resample)
    elif resize == "letterbox":
        scale = s / max(w, h)
        inner = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
        out = Image.new("RGB", (s, s))
        out.paste(inner, ((s - inner.width) // 2, (s - inner.height) // 2))
    elif resize == "center-crop":  # cover, then cut the long side
        scale = s / min(w, h)
        cover = image.resize((max(s, round(w * scale)), max(s, round(h * scale))), resample)
        left, top = (cover.width - s) // 2, (cover.height - s) // 2
        out = cover.crop((left, top, left + s, top + s))
    else:
        raise ValueError(f"resize {resize!r}: one of {', '.join(RESIZE_MODES)}")
    return np.ascontiguousarray(to_rgb(np.asarray(out), order))


def resize_frames(frames: np.ndarray, size: int, resize: str, interpolation: str, order: str) -> np.ndarray:
    """(T, H, W, 3) in colour ``order`` -> (T, S, S, 3) RGB."""
    out = np.empty((frames.shape[0], size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_frame(frame, size, resize, interpolation, order)
    return out
