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


def resize_frame(frame: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(H, W, 3) uint8 in the source colour order -> (S, S, 3) uint8 RGB, as ``pre`` says."""
    image = Image.fromarray(np.ascontiguousarray(to_rgb(frame, pre.source_color_order)))
    s, (w, h), resample = pre.image_size, image.size, _FILTERS[pre.interpolation]
    if pre.resize == ResizeMode.squash:
        return np.asarray(image.resize((s, s), resample))
    if pre.resize == ResizeMode.letterbox:
        scale = s / max(w, h)
        inner = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
        canvas = Image.new("RGB", (s, s))
        canvas.paste(inner, ((s - inner.width) // 2, (s - inner.height) // 2))
        return np.asarray(canvas)
    scale = s / min(w, h)  # center-crop: cover, then cut the long side
    cover = image.resize((max(s, round(w * scale)), max(s, round(h * scale))), resample)
    left, top = (cover.width - s) // 2, (cover.height - s) // 2
    return np.asarray(cover.crop((left, top, left + s, top + s)))


def resize_frames(frames: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(T, H, W, 3) -> (T, S, S, 3)."""
    out = np.empty((frames.shape[0], pre.image_size, pre.image_size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_frame(frame, pre)
    return out
