"""The dataset store (``dataset.zarr``, format version 3): its manifest with the features table, episode table
rows, splits and stats. Format 3: a version holds no frames; each episode's frames and actions lie in an
immutable segment (``schemas.segments``) that later versions reference. Formats 1 and 2 (a version holding its
own arrays) are read as they are.

See DESIGN.md, "The zarr store". The manifest is written last; a store without one is incomplete.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.recorder import (
    DEFAULT_ACTION_NAMES,
    DEFAULT_CAMERA,
    FEATURE_NAME,
    CameraSource,
    ColorOrder,
    InstructionSource,
    SourceKind,
    default_action_names,
)

FORMAT_VERSION = 3  # 3: frames in segments; 2: the manifest carries the features table; 1: features derived
READABLE_FORMATS = (1, 2, 3)
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
    """How source frames became stored frames, every camera alike; a checkpoint carries it so inference does the
    same. Each camera's colour order is its own (``Feature.color_order``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(224, ge=8, le=2048, description="Stored frames are image_size x image_size RGB.")
    resize: ResizeMode = ResizeMode.squash
    interpolation: Interpolation = Interpolation.area

    @model_validator(mode="before")
    @classmethod
    def _camera_order_moved(cls, data: object) -> object:
        """Manifests and checkpoints from before cameras held the one camera's colour order here; the camera
        feature holds it now (``legacy_color_order`` reads it before this drops it)."""
        if isinstance(data, dict) and "source_color_order" in data:
            data = {k: v for k, v in data.items() if k != "source_color_order"}
        return data


def legacy_color_order(preprocessing: object) -> ColorOrder:
    """The one camera's colour order in a manifest or checkpoint written before cameras (bgr when absent)."""
    order = preprocessing.get("source_color_order") if isinstance(preprocessing, dict) else None
    return ColorOrder(order or ColorOrder.bgr)


class DroppedChannel(BaseModel):
    """A recorder action channel the store does not keep."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: int
    name: str
    value: float | None = Field(
        None,
        description="The one value it held in every source episode when it was dropped as constant "
        "(action_channels=auto); None: dropped by an explicit action_channels.",
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
    Cameras are features like any other, any number of them, in the order the policy reads them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=FEATURE_NAME)
    kind: FeatureKind
    dtype: str
    shape: list[int] = Field(description="Per frame (the array is (N, *shape)).")
    source: str = Field(description="The source dataset it was made from, e.g. `images` or `actions[0,1]`.")
    color_order: ColorOrder | None = Field(
        None, description="Cameras: the source's channel order, converted to RGB when stored (and at inference).")
    topic: str | None = Field(None, description="Cameras: the camera's topic in ROS 2 bag sources, when one was given.")

    @model_validator(mode="after")
    def _camera_has_order(self) -> Feature:
        if (self.kind == FeatureKind.camera) != (self.color_order is not None):
            raise ValueError(f"feature {self.name}: a camera has a colour order, and only a camera")
        return self

    def describe(self) -> str:
        order = f", {self.color_order.value} -> rgb" if self.color_order else ""
        return f"{self.name} ({self.kind.value}, {self.dtype} {'x'.join(map(str, self.shape))}) <- {self.source}{order}"

    @property
    def camera_source(self) -> CameraSource:
        """A camera feature as the recorder camera it was built from."""
        assert self.color_order is not None
        return CameraSource(name=self.name, key=self.source, color_order=self.color_order, topic=self.topic)


def camera_features(pre: Preprocessing, cameras: tuple[CameraSource, ...] | list[CameraSource]) -> list[Feature]:
    """One (S, S, 3) uint8 RGB feature per recorder camera, in the recorder's camera order."""
    s = pre.image_size
    return [Feature(name=c.name, kind=FeatureKind.camera, dtype="uint8", shape=[s, s, 3], source=c.key,
                    color_order=c.color_order, topic=c.topic) for c in cameras]


def store_features(pre: Preprocessing, selection: ActionSelection, cameras: tuple[CameraSource, ...] | list[CameraSource],
                   actions_key: str) -> list[Feature]:
    """The features of a store built with ``pre`` and ``selection`` from a recorder's cameras and ``actions_key``."""
    return [*camera_features(pre, cameras),
            Feature(name=ACTION, kind=FeatureKind.action, dtype="float32", shape=[len(selection.channels)],
                    source=f"{actions_key}[{','.join(map(str, selection.channels))}]")]


def legacy_cameras(preprocessing: object) -> list[dict]:
    """The camera features of a manifest or checkpoint from before cameras: its one camera, `images` -> ``rgb``."""
    pre = Preprocessing.model_validate(preprocessing)
    camera = CameraSource(name=DEFAULT_CAMERA, key="images", color_order=legacy_color_order(preprocessing))
    return [f.model_dump(mode="json") for f in camera_features(pre, [camera])]


class FileStamp(BaseModel):
    """A source file as it was stored: size, mtime and a quick hash (its size, first and last 64 KB)."""

    model_config = ConfigDict(frozen=True)

    size: int
    mtime_ns: int
    quick: str


class EpisodeRecord(BaseModel):
    """One row of the store's episode table (``episodes.csv``)."""

    episode: int = Field(description="Position of the episode in the version's table (ids close the gap a remove "
                         "leaves; the content hash follows an episode from version to version).")
    source_path: str
    content_hash: str
    n_frames: int
    instruction: str
    instruction_source: InstructionSource
    scenario: str
    split: Split
    source_kind: SourceKind = Field(SourceKind.hdf5, description="What the source is: an HDF5 file or a ROS 2 bag.")
    source_topics: str = Field("", description="Bags: the topics read, cameras first then commands, `;`-separated.")
    start_ns: int | None = Field(None, description="Bags: the stamp of the episode's first frame (ns).")
    stop_ns: int | None = Field(None, description="Bags: the stamp of the episode's last frame (ns).")
    segment: str = Field("", description="The segment holding its frames and actions (segments/<id>); empty: the "
                         "version's own arrays (formats 1 and 2).")
    segment_start: int | None = Field(None, description="Its first frame inside that segment.")
    source_size: int | None = Field(None, description="The source file's size when stored (with mtime and quick "
                                    "hash: a later build recognises it unchanged without decoding it).")
    source_mtime_ns: int | None = None
    source_quick: str = ""

    def stamp(self) -> FileStamp | None:
        if self.source_size is None or self.source_mtime_ns is None or not self.source_quick:
            return None
        return FileStamp(size=self.source_size, mtime_ns=self.source_mtime_ns, quick=self.source_quick)

    def stamped(self, stamp: FileStamp | None) -> EpisodeRecord:
        if stamp is None:
            return self
        return self.model_copy(update={"source_size": stamp.size, "source_mtime_ns": stamp.mtime_ns,
                                       "source_quick": stamp.quick})

    @field_validator("start_ns", "stop_ns", "segment_start", "source_size", "source_mtime_ns", mode="before")
    @classmethod
    def _empty_cell(cls, value: object) -> object:
        """episodes.csv holds an empty cell where there is no value (pandas reads it as '')."""
        return None if value == "" else value


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
    checksums: dict[str, str] = Field(description="sha256 of every object of the version, by path inside it.")
    segments: dict[str, str] = Field(
        default_factory=dict, description="Format 3: each segment the version's episodes lie in, with the sha256 of "
        "its segment.json (which holds the sha256 of each of its objects).")


    @model_validator(mode="before")
    @classmethod
    def _read_older(cls, data: object) -> object:
        """Older manifests as this format reads them. Format 1: the features a format-1 build wrote, and the
        recorder channels it did not keep, dropped at the teleop recorder's unused value, 0. Format 2 before
        cameras: the one camera's colour order moves from the preprocessing to its feature."""
        if not isinstance(data, dict) or "preprocessing" not in data:
            return data
        order = legacy_color_order(data["preprocessing"])
        if data.get("format_version") == 1 and "features" not in data:
            actions = dict(data["actions"])
            if not actions.get("dropped"):
                channels = actions["channels"]
                names = default_action_names(max(len(DEFAULT_ACTION_NAMES), max(channels) + 1))
                actions["dropped"] = [{"channel": c, "name": names[c], "value": 0.0}
                                      for c in range(len(names)) if c not in channels]
            pre, selection = Preprocessing.model_validate(data["preprocessing"]), ActionSelection.model_validate(actions)
            camera = CameraSource(name=DEFAULT_CAMERA, key="images", color_order=order)
            features = [f.model_dump(mode="json") for f in store_features(pre, selection, [camera], "actions")]
            return {**data, "actions": actions, "features": features}
        if isinstance(data.get("features"), list):
            data = {**data, "features": [f | {"color_order": order} if isinstance(f, dict) and
                                         f.get("kind") == FeatureKind.camera.value and "color_order" not in f else f
                                         for f in data["features"]]}
        return data

    @model_validator(mode="after")
    def _one_action_some_cameras(self) -> StoreManifest:
        kinds = [f.kind for f in self.features]
        names = [f.name for f in self.features]
        if kinds.count(FeatureKind.action) != 1 or FeatureKind.camera not in kinds or len(set(names)) != len(names):
            raise ValueError(f"features {names}: a store holds one action feature and one or more cameras, "
                             "each name once")
        return self

    @property
    def cameras(self) -> list[Feature]:
        """The camera features, in the order the policy reads them."""
        return [f for f in self.features if f.kind == FeatureKind.camera]

    @property
    def camera_names(self) -> list[str]:
        return [f.name for f in self.cameras]

    @property
    def action_feature(self) -> Feature:
        return next(f for f in self.features if f.kind == FeatureKind.action)


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
    update_instructions: bool = Field(
        False, description="A stored episode whose source now gives another instruction takes it (a relabel in the "
        "new version; the frames stay); otherwise it is listed and kept as stored.")
    prune: bool = Field(
        False, description="With overwrite: build without the stored episodes the sources no longer hold (the "
        "current version stays in the store's history); otherwise that is refused, naming them.")
    wait: bool = Field(True, description="When another build is writing the same store, wait for it (else refuse).")
    workers: int = Field(1, ge=1, description="Processes that decode and resize frames; each writes whole shards.")
    scheduler: str | None = Field(
        None, description="A Dask scheduler address (tcp://host:8786): its workers decode, resize and write the "
        "shards instead of local processes (``workers`` is then unused).")


class StoreMarker(BaseModel):
    """``vla-data-store.json``: written first into every store vla-data builds, so that vla-data can prove a
    folder is its own before it ever replaces or deletes it."""

    tool: Literal["vla-data"] = "vla-data"
    tool_version: str
    created: str


VERSION_ID = r"^v[0-9]{6}-[0-9a-f]{8}$"


class StorePointer(BaseModel):
    """``current.json``: the version of the store that readers open (``versions/<version>/``). Written last, in
    one write (an atomic rename locally, one PUT on object storage): that write is the build's commit, so a
    reader sees the previous complete version or the new one, never a part of one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layout: Literal["versions"] = "versions"
    version: str = Field(pattern=VERSION_ID, description="v<sequence>-<random>: sorts in build order.")
    tool_version: str
    created: str

    @property
    def prefix(self) -> str:
        return f"versions/{self.version}"

    @property
    def sequence(self) -> int:
        return int(self.version[1:7])


class StoreWriter(BaseModel):
    """Who holds a store's writer lock (written into the lock file, or the lease object of a store on object
    storage, while held), for the message a second build prints while it waits."""

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


class InstructionChange(BaseModel):
    """A stored episode whose source now gives another instruction (the file, the CSV, the name or the setting)."""

    source_path: str
    stored: str
    now: str
    applied: bool = Field(description="True: the new version holds the new instruction (update_instructions).")


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
        default_factory=list, description="split_file rows that named no source episode (ignored)."
    )
    instructions_changed: list[InstructionChange] = Field(
        default_factory=list, description="Stored episodes whose source now gives another instruction.")
    sources_gone: list[str] = Field(
        default_factory=list, description="Stored episodes kept whose source is no longer where it was stored from.")
    left_out_removed: list[str] = Field(
        default_factory=list, description="Sources left out because `vla-data remove` removed their episode.")
    recognised: int = Field(0, description="Stored source files recognised unchanged by their stamp (size, mtime, "
                            "quick hash), so not read again.")


class RemovedEpisode(BaseModel):
    """An episode `vla-data remove` took out of the store: later builds leave its source out (by content)."""

    source_path: str
    content_hash: str
    version: str = Field(description="The last version that held it (the remove made the next one).")


class BuildLog(BaseModel):
    runs: list[BuildLogEntry] = Field(default_factory=list)
    removed: list[RemovedEpisode] = Field(
        default_factory=list, description="Episodes removed by `vla-data remove`: an incremental build leaves their "
        "sources out (a restore of a version holding them, or an overwrite, brings them back).")
