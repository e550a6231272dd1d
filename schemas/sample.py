"""A training sample: the window/chunk geometry, the field names every consumer uses, and its JSON summary.

See DESIGN.md, "Windows and chunks". A sample is anchored at frame t of one episode:
``rgb`` (W,3,S,S) uint8, frames t-W+1..t, the first frame repeated before the episode start (``frame_mask``
False there); ``actions`` (W,K,A) float32, for each window frame tau the rows tau+o..tau+o+K-1, zero velocity
past the episode end (``chunk_mask`` False there, and on every step of a repeated frame).
"""

from __future__ import annotations

from enum import StrEnum

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator, model_validator


class SampleField(StrEnum):
    """The keys of a sample and of a batch; the trainer and the loss read exactly these."""

    rgb = "rgb"
    frame_mask = "frame_mask"
    actions = "actions"
    chunk_mask = "chunk_mask"
    instruction = "instruction"
    episode = "episode"
    t = "t"


class SegmentField(StrEnum):
    """The keys a segment batch has besides ``SampleField``'s (``Batching.segments``): its ``rgb`` holds each
    camera's unique frames (F, 3, S, S) once, and these say which of them make each sample's window."""

    window_frames = "window_frames"  # (B, W) long: row of ``rgb`` of each window frame of each sample
    frame_instruction = "frame_instruction"  # F strings: the instruction each unique frame is read with


class Batching(StrEnum):
    """How the training loader groups samples into a batch."""

    windows = "windows"  # B independent samples; every frame of every window goes through the backbone
    segments = "segments"  # runs of consecutive anchors of one episode; each frame goes through the backbone once


class BatchingConfig(BaseModel):
    """Per-window or segment batches (README, "Segment batches"). A segment is ``segment_length`` consecutive
    anchors of one episode (fewer at an episode's end), whose windows share all but ``stride`` of their
    frames: a segment of L anchors reads L + W - 1 frames instead of L x W. The loss and its gradients equal the
    per-window batch of the same anchors; what changes is that a batch's anchors are neighbours in time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Batching = Field(Batching.windows, description="windows: independent samples; segments: runs of "
                           "consecutive anchors, each frame through the backbone once per step.")
    # 2: the longest that learned the synthetic task as per-window batches do at equal frames per step
    # (benchmarks/learning.py); longer segments are faster per sample but their batches more correlated
    segment_length: int = Field(2, ge=1, description="Anchors per segment (segments only); the batch size must "
                                "be a multiple of it: a batch is batch_size / segment_length segments. Longer "
                                "segments read fewer frames per sample; their anchors are more correlated.")


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


ENGLISH_SIDE_WORDS: tuple[tuple[str, str], ...] = (("left", "right"),)
# What configs and checkpoints before ``negate_channels`` held: the teleop recorder's lateral channels by name.
LEGACY_NEGATE_NAMES = ("linear_y", "angular_z")


class MirrorRule(BaseModel):
    """What ``augment=mirror`` changes besides flipping the frames left-right.

    The actions of the recorder channels ``negate_channels`` change sign: a channel is known by what it is
    in the recorder's row (the store's ``ActionSelection.channels``), never by the name it was given. The
    instruction's side words are swapped (each pair's left word with its right word; English built in,
    other languages from ``side_words``). An episode whose instruction holds no side word is not mirrored:
    its mirrored copy would name the side the picture no longer shows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    negate_channels: tuple[NonNegativeInt, ...] | None = Field(
        None,
        description="Recorder action channels (indices into the recorder's row, as action_channels) that change "
        "sign in a mirror. None: the teleop recorder's lateral ones, linear_y (1) and angular_z (2), and only for "
        "a recorder of those 3 channels; any other recorder must list them.",
    )
    side_words: tuple[tuple[str, str], ...] = Field(
        (),
        description="(left, right) word pairs besides the built-in English (left, right), e.g. [[왼쪽, 오른쪽]]. "
        "A side word counts where no cased letter or digit touches it: in Latin, Greek or Cyrillic text as a "
        "whole word (left, not leftover); in Hangul or CJK text also with its particle attached (왼쪽에, "
        "왼쪽으로). A language that inflects words in a cased script lists each form as a pair.",
    )

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Every (left, right) pair: English first, then ``side_words``."""
        return ENGLISH_SIDE_WORDS + self.side_words

    @model_validator(mode="before")
    @classmethod
    def _legacy_negate(cls, data: Any) -> Any:
        """Configs and checkpoints written before ``negate_channels`` hold the old default ``negate`` names:
        that is the default rule. Any other ``negate`` is refused, naming what replaced it."""
        if not isinstance(data, dict) or "negate" not in data:
            return data
        data = dict(data)
        negate = data.pop("negate")
        if tuple(negate) != LEGACY_NEGATE_NAMES:
            raise ValueError(f"negate {list(negate)}: channels are no longer negated by name; give "
                             "negate_channels, the recorder channel indices (linear_x 0, linear_y 1, angular_z 2)")
        return data

    @field_validator("negate_channels")
    @classmethod
    def _unique(cls, channels: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if channels is not None and len(set(channels)) != len(channels):
            raise ValueError(f"negate_channels {list(channels)} repeats a channel")
        return channels

    @field_validator("side_words")
    @classmethod
    def _one_meaning_per_word(cls, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        words = [w.strip().lower() for pair in ENGLISH_SIDE_WORDS + pairs for w in pair]
        if not all(words):
            raise ValueError("a side word is empty")
        repeated = sorted({w for w in words if words.count(w) > 1})
        if repeated:
            raise ValueError(f"side word(s) {repeated} appear more than once; each word swaps with exactly one other")
        return tuple((a.strip(), b.strip()) for a, b in pairs)


class SampleSummary(BaseModel):
    """One sample as `vla-data inspect-sample --json` prints it (actions in physical units)."""

    split: str
    index: int
    episode: int
    t: int
    instruction: str
    mirrored: bool
    action_names: list[str]
    shapes: dict[SampleField, list[int]] = Field(description="frame_mask, actions, chunk_mask.")
    cameras: dict[str, list[int]] = Field(description="The rgb shape of each camera, (W, 3, S, S), in the store's order.")
    frame_mask: list[bool]
    chunk_mask: list[list[bool]]
    actions: list[list[list[float]]] = Field(description="(W, K, A), physical units; padded entries are zero velocity.")
