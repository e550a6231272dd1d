"""A training sample: the window/chunk geometry, the field names every consumer uses, and its JSON summary.

See DESIGN.md, "Windows and chunks". A sample is anchored at frame t of one episode:
``rgb`` (W,3,S,S) uint8, frames t-W+1..t, the first frame repeated before the episode start (``frame_mask``
False there); ``actions`` (W,K,A) float32, for each window frame tau the rows tau+o..tau+o+K-1, zero velocity
past the episode end (``chunk_mask`` False there, and on every step of a repeated frame).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class SampleField(StrEnum):
    """The keys of a sample and of a batch; the trainer and the loss read exactly these."""

    rgb = "rgb"
    frame_mask = "frame_mask"
    actions = "actions"
    chunk_mask = "chunk_mask"
    instruction = "instruction"
    episode = "episode"
    t = "t"


class Augment(StrEnum):
    none = "none"
    mirror = "mirror"  # frames flipped left-right, lateral channels negated, left/right swapped in the words


class WindowSpec(BaseModel):
    """The geometry of a sample: shared by the dataset, the trainer's config and the checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(8, ge=1, description="Frames per sample, W: t-W+1..t.")
    chunk: int = Field(10, ge=1, description="Future actions per frame, K.")
    stride: int = Field(1, ge=1, description="Anchor every stride-th frame of an episode (1: every frame).")
    action_offset: int = Field(
        1, ge=0, description="The action chosen after seeing frame t is row t+offset (the recorder sends, then grabs)."
    )


class MirrorRule(BaseModel):
    """What ``augment=mirror`` changes besides flipping the frames left-right."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    negate: tuple[str, ...] = Field(("linear_y", "angular_z"), description="Action channels (by name) that change sign.")
    swap_words: tuple[tuple[str, str], ...] = (("left", "right"),)


class SampleSummary(BaseModel):
    """One sample as `vla-data inspect-sample --json` prints it (actions in physical units)."""

    split: str
    index: int
    episode: int
    t: int
    instruction: str
    mirrored: bool
    action_names: list[str]
    shapes: dict[SampleField, list[int]]
    frame_mask: list[bool]
    chunk_mask: list[list[bool]]
    actions: list[list[list[float]]] = Field(description="(W, K, A), physical units; padded entries are zero velocity.")
