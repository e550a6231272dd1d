"""The dataset store (``dataset.zarr``, format version 2): its manifest with the features table, episode table
rows, splits and stats.

See DESIGN.md, "The zarr store". The manifest is written last; a store without one is incomplete.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.recorder import DEFAULT_ACTION_NAMES, ColorOrder, InstructionSource, default_action_names

FORMAT_VERSION = 2  # 2: the manifest carries the features table; format 1 is read as it is (features derived)
READABLE_FORMATS = (1, 2)
CAMERA = "rgb"  # the name (and array data/<name>) of the one camera a store holds today
ACTION = "action"


class ResizeMode(StrEnum):
    squash = "squash"  # stretch to S x S: keeps the whole field of view, distorts the aspect
    letterbox = "letterbox"  # scale to fit, pad with black: keeps field of view and aspect
    center_crop = "center-crop"  # scale to cover, cut the sides: loses the frame's left and right edges


class Interpolation(StrEnum):
    bilinear = "bilinear"
    bicubic = "bicubic"
    area = "area"  # Pillow's BOX filter: the mean of the source pixels covered


class Preprocessing(BaseModel):
    """How source frames became stored frames; a checkpoint carries it so inference does the same."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_color_order: ColorOrder = ColorOrder.bgr
    image_size: int = Field(224, ge=8, le=2048, description="Stored frames are image_size x image_size RGB.")
    resize: ResizeMode = ResizeMode.squash
    interpolation: Interpolation = Interpolation.area


class DroppedChannel(BaseModel):
    """A recorder action channel the store does not keep."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: int
    name: str
    value: float | None = Field(
        None,
        description="The one value it held in every source episode when it was dropped as constant "
        "(--action-channels auto); None: dropped by an explicit --action-channels.",
    )


class ActionSelection(BaseModel):
    """Which recorder action channels the store keeps, and their names, in stored order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: list[int] = Field(min_length=1)
    names: list[str] = Field(min_length=1)
    dropped: list[DroppedChannel] = Field(
        default_factory=list,
        description="The recorder's other channels; an incremental build refuses episodes that use one of them.",
    )

    @property
    def recorder_dim(self) -> int:
        """How many channels the recorder writes: the kept ones and the dropped ones."""
        return len(self.channels) + len(self.dropped)

    @model_validator(mode="after")
    def _aligned(self) -> ActionSelection:
        if len(self.channels) != len(self.names):
            raise ValueError(f"{len(self.channels)} channels but {len(self.names)} names")
        if len(set(self.channels)) != len(self.channels) or len(set(self.names)) != len(self.names):
            raise ValueError("action channels and names must be unique")
        return self


class Split(StrEnum):
    train = "train"
    val = "val"
    test = "test"


class Stratify(StrEnum):
    scenario = "scenario"
    instruction = "instruction"
    none = "none"


class SplitConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    val_ratio: float = Field(0.1, gt=0, lt=1, description="Share of episodes for val; at least one is always val.")
    test_ratio: float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    stratify: Stratify = Stratify.scenario
    split_file: str | None = Field(
        None, description="CSV (columns episode, split) that assigns new episodes explicitly; ratios then unused."
    )

    def same_rule(self, other: SplitConfig) -> bool:
        """Whether ``other`` assigns new episodes the way this does (the split file may grow between builds)."""
        keys = {"val_ratio", "test_ratio", "seed", "stratify"}
        same_kind = (self.split_file is None) == (other.split_file is None)
        return same_kind and self.model_dump(include=keys) == other.model_dump(include=keys)

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitConfig:
        if self.val_ratio + self.test_ratio >= 1:
            raise ValueError("val_ratio + test_ratio must leave episodes for train (sum < 1)")
        return self


class SplitFileRow(BaseModel):
    """One row of a ``--split-file`` CSV: an episode (file name, or path relative to the source folder) and its split."""

    model_config = ConfigDict(extra="ignore")

    episode: str = Field(min_length=1)
    split: Split


class NormMode(StrEnum):
    mean_std = "mean_std"  # (x - mean) / std
    min_max = "min_max"  # to [-1, 1] over [min, max]
    q01_q99 = "q01_q99"  # to [-1, 1] over [q01, q99], robust to rare extremes


class ChannelStats(BaseModel):
    """Exact statistics of one action channel over every train frame."""

    model_config = ConfigDict(frozen=True)

    count: int
    mean: float
    std: float
    min: float
    max: float
    q01: float
    q99: float


class NormStats(BaseModel):
    """Train-split statistics and the normalisation chosen with them.

    Constant channels: where a channel's spread (std, max - min or q99 - q01, by mode) is below ``eps``,
    the scale is 1 and the offset the channel's centre, so the channel normalises to 0 and denormalises
    back exactly; nothing is divided by ~0.
    """

    model_config = ConfigDict(frozen=True)

    mode: NormMode = NormMode.mean_std
    eps: float = 1e-6
    action: list[ChannelStats]
    image_mean: list[float] = Field(description="Per RGB channel, of the stored (resized) train frames, 0..1.")
    image_std: list[float]

    def offset_scale(self) -> tuple[list[float], list[float]]:
        """``normalised = (x - offset) / scale`` per action channel."""
        offsets, scales = [], []
        for c in self.action:
            if self.mode == NormMode.mean_std:
                offset, spread = c.mean, c.std
            elif self.mode == NormMode.min_max:
                offset, spread = (c.min + c.max) / 2, (c.max - c.min) / 2
            else:
                offset, spread = (c.q01 + c.q99) / 2, (c.q99 - c.q01) / 2
            offsets.append(offset)
            scales.append(spread if spread > self.eps else 1.0)
        return offsets, scales


class FeatureKind(StrEnum):
    camera = "camera"  # (S, S, 3) uint8 RGB frames, one per frame of the episode
    action = "action"  # (A,) float32 in physical units, one row per frame


class Feature(BaseModel):
    """One stored per-frame array: what it is, its per-frame shape, and where in a source episode it came from.
    Cameras are features like any other; the array lives at ``data/<name>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: FeatureKind
    dtype: str
    shape: list[int] = Field(description="Per frame (the array is (N, *shape)).")
    source: str = Field(description="The source dataset it was made from, e.g. `images` or `actions[0,1]`.")

    def describe(self) -> str:
        return f"{self.name} ({self.kind.value}, {self.dtype} {'x'.join(map(str, self.shape))}) <- {self.source}"


def store_features(pre: Preprocessing, selection: ActionSelection, frames_key: str, actions_key: str) -> list[Feature]:
    """The features of a store built with ``pre`` and ``selection`` from a recorder's ``frames_key``/``actions_key``."""
    s = pre.image_size
    return [
        Feature(name=CAMERA, kind=FeatureKind.camera, dtype="uint8", shape=[s, s, 3], source=frames_key),
        Feature(name=ACTION, kind=FeatureKind.action, dtype="float32", shape=[len(selection.channels)],
                source=f"{actions_key}[{','.join(map(str, selection.channels))}]"),
    ]


class EpisodeRecord(BaseModel):
    """One row of the store's episode table (``episodes.csv``)."""

    episode: int = Field(description="Index of the episode in the store (order of meta/episode_ends).")
    source_path: str
    content_hash: str
    n_frames: int
    instruction: str
    instruction_source: InstructionSource
    scenario: str
    split: Split


class StoreManifest(BaseModel):
    """What the store holds and how it was made; written last, so its presence means the store is complete.

    A format-1 manifest (before the features table) reads as it is: its features are the ones a format-1
    build wrote (the camera from the recorder's `images`, the kept channels of `actions`).
    """

    format_version: int = FORMAT_VERSION
    tool_version: str
    created: str
    sources: list[str]
    preprocessing: Preprocessing
    actions: ActionSelection
    splits: SplitConfig
    split_episodes: dict[Split, int]
    split_frames: dict[Split, int]
    n_episodes: int
    n_frames: int
    stats: NormStats
    source_frame_sizes: list[str] = Field(
        default_factory=list,
        description="Frame sizes (HxW) of the source episodes, before resizing; inference warns on another aspect.",
    )
    features: list[Feature] = Field(description="Every stored per-frame array (cameras, actions), by name.")
    checksums: dict[str, str] = Field(description="sha256 of every stored object, by path inside the store.")


    @model_validator(mode="before")
    @classmethod
    def _read_format_1(cls, data: object) -> object:
        """A format-1 manifest as format 2 reads it: the features a format-1 build wrote, and the recorder
        channels it did not keep, dropped at the teleop recorder's unused value, 0."""
        if not isinstance(data, dict) or data.get("format_version") != 1 or "features" in data:
            return data
        actions = dict(data["actions"])
        if not actions.get("dropped"):
            channels = actions["channels"]
            names = default_action_names(max(len(DEFAULT_ACTION_NAMES), max(channels) + 1))
            actions["dropped"] = [{"channel": c, "name": names[c], "value": 0.0}
                                  for c in range(len(names)) if c not in channels]
        pre, selection = Preprocessing.model_validate(data["preprocessing"]), ActionSelection.model_validate(actions)
        features = [f.model_dump() for f in store_features(pre, selection, "images", "actions")]
        return {**data, "actions": actions, "features": features}

    def feature(self, kind: FeatureKind) -> Feature:
        """The store's one feature of ``kind`` (one camera and one action array today)."""
        return next(f for f in self.features if f.kind == kind)


class BuildOptions(BaseModel):
    """Everything `vla-data build-splits` is asked to do, besides the sources and the output path."""

    model_config = ConfigDict(extra="forbid")

    preprocessing: Preprocessing = Preprocessing()
    splits: SplitConfig = SplitConfig()
    action_channels: Literal["auto"] | list[int] = Field(
        "auto", description="'auto': every channel not constant across the source episodes; or explicit indices."
    )
    action_names: list[str] | None = Field(None, description="Names of the kept channels; default by position.")
    norm_mode: NormMode = NormMode.mean_std
    skip_invalid: bool = Field(False, description="Leave out episodes with errors instead of stopping.")
    overwrite: bool = Field(
        False, description="Replace a store built with other preprocessing, channels or splits (only ever a vla-data store)."
    )
    replace_changed: bool = Field(
        False, description="A stored source whose content changed replaces its stored episode, in the same split."
    )
    wait: bool = Field(True, description="When another build is writing the same store, wait for it (else refuse).")
    workers: int = Field(1, ge=1, description="Processes that decode and resize frames; each writes whole shards.")


class StoreMarker(BaseModel):
    """``vla-data-store.json``: written first into every store vla-data builds, so that vla-data can prove a
    folder is its own before it ever replaces or deletes it."""

    tool: Literal["vla-data"] = "vla-data"
    tool_version: str
    created: str


class StoreWriter(BaseModel):
    """Who holds a store's writer lock (written into the lock file while held), for the message a second
    build prints while it waits."""

    pid: int
    host: str
    command: str
    started: str

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid} on {self.host}, started {self.started})"


class Duplicate(BaseModel):
    """A source left out because another episode has the same content."""

    source_path: str
    same_as: str = Field(description="The source path of the episode kept (stored earlier, or first in this build).")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: object) -> object:
        # build logs written before same_as was recorded hold the path alone
        return {"source_path": value, "same_as": "unknown"} if isinstance(value, str) else value


class ReplacedEpisode(BaseModel):
    """A stored episode whose source changed, replaced in its split (``--replace-changed``)."""

    source_path: str
    old_hash: str
    new_hash: str
    split: Split


class SkippedEpisode(BaseModel):
    source_path: str
    reason: str


class BuildLogEntry(BaseModel):
    """One run of build-splits on this store."""

    tool_version: str
    created: str
    added: list[str] = Field(description="Source paths of the episodes this run added.")
    kept: int = Field(description="Episodes already in the store, kept as they were.")
    skipped: list[SkippedEpisode] = Field(default_factory=list)
    duplicates: list[Duplicate] = Field(default_factory=list, description="Sources left out: same content as another.")
    replaced: list[ReplacedEpisode] = Field(default_factory=list)
    unmatched_split_rows: list[str] = Field(
        default_factory=list, description="--split-file rows that named no source episode (ignored)."
    )


class BuildLog(BaseModel):
    runs: list[BuildLogEntry] = Field(default_factory=list)
