"""Turning a recorder frame into a stored frame: one resize to S x S, then RGB, as ``Preprocessing`` says.

The rule itself lives in the robot client (``vla_client.preprocess``), so a robot that runs the policy without
vla-data prepares its frames with the very code the store was built with.
"""

from __future__ import annotations

import numpy as np

from schemas import ColorOrder
from schemas.store import Preprocessing
from vla_client import preprocess


def to_rgb(frame: np.ndarray, order: ColorOrder) -> np.ndarray:
    return preprocess.to_rgb(frame, ColorOrder(order).value)


def resize_frame(frame: np.ndarray, pre: Preprocessing, order: ColorOrder) -> np.ndarray:
    """(H, W, 3) uint8 in the camera's colour ``order`` -> (S, S, 3) uint8 RGB, as ``pre`` says."""
    return preprocess.resize_frame(frame, pre.image_size, pre.resize.value, pre.interpolation.value,
                                   ColorOrder(order).value)


def resize_frames(frames: np.ndarray, pre: Preprocessing, order: ColorOrder) -> np.ndarray:
    """(T, H, W, 3) in colour ``order`` -> (T, S, S, 3) RGB."""
    return preprocess.resize_frames(frames, pre.image_size, pre.resize.value, pre.interpolation.value,
                                    ColorOrder(order).value)
