"""The frames a policy expects, as ``hello`` says it: checked on the robot before sending, and by the server.

A policy resizes every frame to S x S, so any frame gives an action and nothing downstream notices a wrong
one. Two kinds are worth stopping:

- a frame smaller than the model's input (or the smallest training frame, when that was smaller) on its short
  side: a thumbnail, a 1x1 test frame, a wrong ROI; the model is shown detail it never had;
- a frame whose aspect ratio is far from the training camera's (a portrait stream, another camera): resized
  to S x S, the scene is stretched otherwise than in training.

The server refuses both (``REFUSE_ASPECT``); the client, ``predict`` and ``drive`` warn from the closer
``WARN_ASPECT`` on (another camera mode than in training, still usable). A policy that does not record its
training sizes (trained before they were recorded) is checked for the size only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WARN_ASPECT = 0.02  # relative difference of width/height from which predict, the client and drive warn
REFUSE_ASPECT = 0.10  # ... and from which the server refuses the frame (unless told to act on any frame)


class FrameWarning(UserWarning):
    """Frames the policy will act on, but of another aspect ratio than it was trained on."""


def parse_size(size: str) -> tuple[int, int]:
    """``"HxW"`` -> (H, W)."""
    height, width = (int(n) for n in size.split("x"))
    return height, width


@dataclass(frozen=True)
class ExpectedFrames:
    """What a policy was trained on: its input side ``image_size`` (S) and the (H, W) of its training frames
    before resizing (empty when the policy does not say), resized by ``resize`` (squash, letterbox, ...)."""

    image_size: int
    trained: tuple[tuple[int, int], ...] = ()
    resize: str = "squash"

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ExpectedFrames:
        """From ``hello``'s metadata (``schemas.serve.ServeMetadata``)."""
        return cls(int(metadata["image_size"]), tuple(parse_size(s) for s in metadata.get("source_frame_sizes", [])),
                   str(metadata.get("resize", "squash")))

    @property
    def smallest_side(self) -> int:
        """The shortest side a frame may have: S, or the training frames' shortest side where that is smaller."""
        return min([self.image_size, *(min(size) for size in self.trained)])

    def aspect_off(self, height: int, width: int) -> float:
        """How far the frame's width/height is from the closest training frame's, relative (0: the same, or the
        training sizes are unknown)."""
        if not self.trained or height <= 0 or width <= 0:
            return 0.0
        return min(abs(width / height - w / h) / (w / h) for h, w in self.trained)

    def _trained(self) -> str:
        sizes = ", ".join(f"{h}x{w}" for h, w in self.trained)
        h, w = self.trained[0]
        return (f"the policy was trained on {sizes} (aspect {w / h:.2f}), resized ({self.resize}) to "
                f"{self.image_size}x{self.image_size}")

    def refusal(self, height: int, width: int) -> str | None:
        """Why a frame of this size is not acted on, or None."""
        if min(height, width) < self.smallest_side:
            return (f"a {height}x{width} frame is smaller than the policy reads ({self.smallest_side} pixels on the "
                    f"short side; it resizes to {self.image_size}x{self.image_size}): send the camera's full frame")
        if self.aspect_off(height, width) > REFUSE_ASPECT:
            return (f"a {height}x{width} frame (aspect {width / height:.2f}) is not the training camera's shape: "
                    f"{self._trained()}; send that camera's frames, or crop to its aspect")
        return None

    def warning(self, height: int, width: int) -> str | None:
        """A warning for frames of this size (another aspect than in training, beyond ``WARN_ASPECT``), or None."""
        if self.aspect_off(height, width) <= WARN_ASPECT:
            return None
        return (f"frames are {height}x{width} (aspect {width / height:.2f}), {self._trained()}: the scene will look "
                "stretched otherwise than in training; use the training camera's resolution, or crop to its aspect")


@dataclass
class FrameCheck:
    """The robot side's check before a step (``PolicyClient`` and ``LocalPolicy``): ``ValueError`` for a raw
    frame the policy would refuse (``refuses``: off for a server from before the check, or one that acts on any
    frame), a ``FrameWarning`` once per camera and size for another aspect ratio than in training. Encoded
    frames are checked once decoded."""

    expected: ExpectedFrames
    refuses: bool = True
    warned: set[tuple[str, int, int]] = field(default_factory=set)

    def __call__(self, frames: Mapping[str, Any], stacklevel: int = 3) -> None:
        for camera, frame in frames.items():
            if not isinstance(frame, np.ndarray) or frame.ndim != 3:
                continue
            height, width = frame.shape[:2]
            if self.refuses and (problem := self.expected.refusal(height, width)):
                raise ValueError(f"camera {camera}: {problem}")
            if (camera, height, width) not in self.warned and (warning := self.expected.warning(height, width)):
                self.warned.add((camera, height, width))
                warnings.warn(f"camera {camera}: {warning}", FrameWarning, stacklevel=stacklevel)
