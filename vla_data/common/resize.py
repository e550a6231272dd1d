"""Turning a recorder frame into a stored frame: colour order to RGB, then one resize to S x S (Pillow)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from schemas import ColorOrder
from schemas.store import Interpolation, Preprocessing, ResizeMode

_FILTERS = {
    Interpolation.bilinear: Image.Resampling.BILINEAR,
    Interpolation.bicubic: Image.Resampling.BICUBIC,
    Interpolation.area: Image.Resampling.BOX,
}


def to_rgb(frame: np.ndarray, order: ColorOrder) -> np.ndarray:
    return frame[..., ::-1] if order == ColorOrder.bgr else frame


def resize_frame(frame: np.ndarray, pre: Preprocessing, order: ColorOrder) -> np.ndarray:
    """(H, W, 3) uint8 in the camera's colour ``order`` -> (S, S, 3) uint8 RGB, as ``pre`` says.

    Resizing treats each channel alone, so the frame is resized in its own order and only the S x S
    result is turned into RGB: the same pixels as converting first, without copying the full frame.
    """
    image = Image.fromarray(np.ascontiguousarray(frame))
    s, (w, h), resample = pre.image_size, image.size, _FILTERS[pre.interpolation]
    if pre.resize == ResizeMode.squash:
        out = image.resize((s, s), resample)
    elif pre.resize == ResizeMode.letterbox:
        scale = s / max(w, h)
        inner = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
        out = Image.new("RGB", (s, s))
        out.paste(inner, ((s - inner.width) // 2, (s - inner.height) // 2))
    else:  # center-crop: cover, then cut the long side
        scale = s / min(w, h)
        cover = image.resize((max(s, round(w * scale)), max(s, round(h * scale))), resample)
        left, top = (cover.width - s) // 2, (cover.height - s) // 2
        out = cover.crop((left, top, left + s, top + s))
    return np.ascontiguousarray(to_rgb(np.asarray(out), order))


def resize_frames(frames: np.ndarray, pre: Preprocessing, order: ColorOrder) -> np.ndarray:
    """(T, H, W, 3) in colour ``order`` -> (T, S, S, 3) RGB."""
    out = np.empty((frames.shape[0], pre.image_size, pre.image_size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_frame(frame, pre, order)
    return out
