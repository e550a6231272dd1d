"""Frames become S x S RGB once, as the preprocessing says; crop is never the default."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import ColorOrder
from schemas.store import Preprocessing, ResizeMode
from vla_data.common.resize import resize_frame


def _frame() -> np.ndarray:
    f = np.zeros((72, 128, 3), np.uint8)  # 16:9, BGR
    f[:, :8] = (0, 0, 255)  # a red target at the left edge
    return f


def test_default_squash_keeps_the_left_edge_and_converts_bgr_to_rgb() -> None:
    pre = Preprocessing(image_size=32)
    assert pre.resize == ResizeMode.squash
    out = resize_frame(_frame(), pre, ColorOrder.bgr)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert tuple(out[16, 0]) == (255, 0, 0) and tuple(out[16, 31]) == (0, 0, 0)


def test_letterbox_pads_top_and_bottom_and_keeps_the_edges() -> None:
    out = resize_frame(_frame(), Preprocessing(image_size=32, resize=ResizeMode.letterbox), ColorOrder.bgr)
    assert tuple(out[16, 0]) == (255, 0, 0)
    assert not out[:7].any() and not out[-7:].any()  # 128x72 -> 32x18, centred: 7 rows of padding


def test_center_crop_loses_the_edges() -> None:
    out = resize_frame(_frame(), Preprocessing(image_size=32, resize=ResizeMode.center_crop), ColorOrder.bgr)
    assert not (out[..., 0] > 100).any()


@pytest.mark.parametrize("order, channel", [(ColorOrder.bgr, 0), (ColorOrder.rgb, 2)])
def test_colour_order(order: ColorOrder, channel: int) -> None:
    out = resize_frame(_frame(), Preprocessing(image_size=32), order)
    assert out[16, 0, channel] == 255
