"""The recorder's HDF5 episode: the settings that describe a recorder, the scenario in a file name, and the
raw-episode contract that validation builds from what a file holds (see DESIGN.md, "The recorder's HDF5 episode").

Every violation of the contract is raised as a ``PydanticCustomError`` whose type is a ``FindingCode``, so
``RawEpisode.findings_for`` turns a pydantic ``ValidationError`` into findings one to one.
"""

from __future__ import annotations

import difflib
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.bags import DEFAULT_CAMERA_TOPIC, BagSettings
from schemas.findings import Finding, FindingCode
from schemas.fixes import Fix, SettingsRefusal
from schemas.sample import WindowSpec

DEFAULT_ACTION_NAMES = ("linear_x", "linear_y", "angular_z")
# The channels of that row that change sign when the scene is seen in a left-right mirror: sideways motion
# and turning (linear_y, angular_z); forward motion does not. augment=mirror's rule when none is given.
DEFAULT_MIRROR_NEGATE = (1, 2)
# Names other recorders and tools use for the same things; used only to suggest a fix.
KNOWN_FRAME_KEYS = ("images", "observations/images", "rgb", "image", "frames", "observation/image", "camera")
# The colour order of the recorder layouts known by their frames key: the ROS 2 collector stores cv_bridge's
# bgr8 under `images`; the newer recorder stores RGB under `observations/images`. A hint that names a frames
# key names its colour order with it, so following the hint never swaps red and blue.
KNOWN_COLOR_ORDERS = {"images": "bgr", "observations/images": "rgb"}
LEROBOT_CAMERA_PREFIX = "observation.images."  # a LeRobot dataset's cameras: RGB by its format
KNOWN_ACTION_KEYS = ("actions", "action", "observations/actions", "cmd_vel", "velocity")


def default_action_names(action_dim: int) -> list[str]:
    """Names of the recorder's action channels by position: linear_x, linear_y, angular_z, channel_3..."""
    return [DEFAULT_ACTION_NAMES[c] if c < len(DEFAULT_ACTION_NAMES) else f"channel_{c}" for c in range(action_dim)]


class ColorOrder(StrEnum):
    bgr = "bgr"
    rgb = "rgb"


class InstructionSource(StrEnum):
    file = "file"  # the HDF5 file's instruction dataset
    topic = "topic"  # a bag's instruction topic
    metadata = "metadata"  # a bag's metadata (custom_data)
    csv = "csv"  # dataset_index.csv
    task = "task"  # a LeRobot dataset's task of the episode
    setting = "setting"  # the recorder settings' instruction (--instruction)
    file_name = "file_name"  # the template, over the target side the file name gives
    relabel = "relabel"  # set in the store by `vla-data relabel`: builds keep it whatever the source says


class SourceKind(StrEnum):
    hdf5 = "hdf5"  # a recorder HDF5 episode file
    rosbag2 = "rosbag2"  # a ROS 2 bag: a folder with metadata.yaml, or one .mcap file
    lerobot = "lerobot"  # a LeRobotDataset v3.0 folder (meta/info.json): its episodes are DIR#k


FEATURE_NAME = r"^[A-Za-z0-9_.-]+$"  # a stored feature's (and so a camera's) name
DEFAULT_CAMERA = "rgb"  # the name of a recorder's one camera when none is given (every store before cameras had one)


class CameraSource(BaseModel):
    """One camera of a recorder: the name it is stored and fed to the policy under, the HDF5 dataset holding its
    (T, H, W, 3) uint8 frames, and the channel order it writes them in (converted to RGB once, at build time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(DEFAULT_CAMERA, pattern=FEATURE_NAME, description="The camera's name in the store and the policy.")
    key: str = Field("images", min_length=1, description="HDF5 dataset holding the camera's (T, H, W, 3) uint8 frames.")
    color_order: ColorOrder = Field(ColorOrder.bgr, description="Channel order of the stored frames (of HDF5 "
                                    "episodes; bag frames say theirs in each message) and of the raw frames the "
                                    "robot sends at inference.")
    topic: str | None = Field(None, min_length=1, description="The camera's topic in ROS 2 bags (sensor_msgs/Image or "
                              "CompressedImage); the first camera's defaults to /camera/image_raw.")

    def describe(self) -> str:
        topic = f", topic {self.topic}" if self.topic else ""
        return f"{self.name} <- `{self.key}` ({self.color_order.value}{topic})"


class LeRobotSettings(BaseModel):
    """How a LeRobotDataset v3.0 folder's episodes become rows (cameras and actions are the settings' keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action_offset: int = Field(1, ge=0, description="LeRobot's action at frame t (sent after seeing frame t) becomes "
                               "the row t+offset; the first rows are zero velocity (the store's and training's "
                               "default offset is 1: keep them equal).")


class RecorderSettings(BaseModel):
    """Where a recorder puts things and what it promises. Defaults describe the ROS 2 teleop collector.

    ``cameras`` lists every camera in the order the policy reads them; the first is the default. A settings
    file may give the one camera the old way, ``frames_key`` / ``color_order``.
    """

    model_config = ConfigDict(extra="forbid")

    cameras: tuple[CameraSource, ...] = Field(
        (CameraSource(),), min_length=1,
        description="Every camera (name, key, colour order), in the order the policy reads them.")
    actions_key: str = Field("actions", description="HDF5 dataset holding the (T, A) float actions.")
    instruction_key: str = Field("language_instruction", description="HDF5 dataset holding the instruction.")
    events_key: str = Field("action_event_types", description="HDF5 dataset holding per-frame event types.")
    action_dim: int = Field(3, ge=1, description="Number of action channels the recorder writes.")
    action_bound: float = Field(1.5, gt=0, description="Warn when any |action| exceeds this.")
    index_csv_name: str = Field(
        "dataset_index.csv", description="File (episode_path, instruction) looked up in the episode's folders."
    )
    instruction: str | None = Field(
        None, min_length=1, description="The instruction of every episode whose source and CSV give none (before "
        "the file-name template).")
    instruction_template: str = Field(
        "Navigate around obstacles and reach the front of the beverage bottle on the {side}",
        description="Instruction made from the file name's target side when file and CSV have none.",
    )
    bag: BagSettings = Field(default_factory=BagSettings, description="How ROS 2 bags become episodes.")
    lerobot: LeRobotSettings = Field(default_factory=LeRobotSettings, description="How LeRobot datasets become "
                                     "episodes.")

    @model_validator(mode="before")
    @classmethod
    def _one_camera(cls, data: Any) -> Any:
        """``frames_key`` / ``color_order`` (settings files and reports from before cameras) are the one camera."""
        if not isinstance(data, dict) or not ({"frames_key", "color_order"} & data.keys()):
            return data
        data = dict(data)
        legacy = {k: data.pop(f) for f, k in (("frames_key", "key"), ("color_order", "color_order")) if f in data}
        if "cameras" in data:
            raise ValueError("give the cameras either as `cameras` or as frames_key/color_order (one camera), not both")
        data["cameras"] = [legacy]
        return data

    @field_validator("cameras")
    @classmethod
    def _distinct(cls, cameras: tuple[CameraSource, ...]) -> tuple[CameraSource, ...]:
        for what in ("name", "key"):
            values = [getattr(c, what) for c in cameras]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"camera {what}(s) {repeated} given more than once; each camera needs its own")
        return cameras

    @model_validator(mode="after")
    def _bag_channels(self) -> Self:
        if "command_fields" in self.bag.model_fields_set and len(self.bag.command_fields) != self.action_dim:
            raise SettingsRefusal(f"the bag command fields {', '.join(self.bag.command_fields)} give "
                                  f"{len(self.bag.command_fields)} action channel(s) and action_dim is "
                                  f"{self.action_dim}: give the same number", Fix({"action_dim": len(self.bag.command_fields)}))
        topics = [t for t in self.camera_topics.values() if t is not None]
        repeated = sorted({t for t in topics if topics.count(t) > 1})
        if repeated:
            raise ValueError(f"camera topic(s) {repeated} given more than once; each camera needs its own")
        return self

    @property
    def command_fields(self) -> tuple[str, ...]:
        """The Twist fields that are a bag's action channels: as given, else the first ``action_dim`` of
        linear.x, linear.y, angular.z (the recorder's channels by position)."""
        if "command_fields" in self.bag.model_fields_set:
            return self.bag.command_fields
        return self.bag.command_fields[: self.action_dim]

    @property
    def camera_topics(self) -> dict[str, str | None]:
        """Each camera's topic in bags, by camera name: as given; the first camera's defaults to
        ``/camera/image_raw``; another camera without one has none (a bag source then names the fix)."""
        return {c.name: c.topic or (DEFAULT_CAMERA_TOPIC if i == 0 else None) for i, c in enumerate(self.cameras)}

    @property
    def camera(self) -> CameraSource:
        """The first (default) camera."""
        return self.cameras[0]


_SCENARIO = re.compile(
    r"(?:^|_)(?P<layout>[12]box_(?:hori|vert)|v3)_(?P<side>left|right|center|recovery|noise)"
    r"(?:_(?P<pattern>core|variant))?(?:_(?P<distance>close|medium|far))?(?:_|$)"
)


class Scenario(BaseModel):
    """What the recorder's file name says about an episode.

    ``episode_20251106_123136_1box_hori_left_core_medium.h5`` -> layout ``1box_hori``, side ``left``,
    pattern ``core``, distance ``medium``; ``..._v3_center_core_far.h5`` -> layout ``v3``, side ``center``.
    """

    model_config = ConfigDict(frozen=True)

    layout: str
    side: str
    pattern: str | None = None
    distance: str | None = None

    @property
    def name(self) -> str:
        """The scenario key used for stratifying and reporting, e.g. ``1box_hori_left`` or ``v3_recovery``."""
        return f"{self.layout}_{self.side}"

    @property
    def target_side(self) -> str | None:
        return self.side if self.side in ("left", "right") else None

    @classmethod
    def from_file_name(cls, name: str) -> Scenario | None:
        match = _SCENARIO.search(Path(name).stem)
        return cls(**match.groupdict()) if match else None


class ArrayHeader(BaseModel):
    """What an HDF5 dataset looks like, read without reading its data."""

    model_config = ConfigDict(frozen=True)

    key: str
    shape: tuple[int, ...]
    dtype: str


def _fail(code: FindingCode, message: str, hint: str, key: str | None, *fixes: Fix) -> PydanticCustomError:
    # Messages are pre-formatted: braces in file or key names must not be taken as template fields.
    return PydanticCustomError(code.value, message.replace("{", "{{").replace("}", "}}"),
                               {"hint": hint, "key": key, "fixes": fixes})


def _closest(wanted: str, keys: list[str], known: tuple[str, ...]) -> str | None:
    """The existing dataset most likely meant by ``wanted``: a known alias first, else the closest name."""
    for alias in known:
        if alias in keys:
            return alias
    found = difflib.get_close_matches(wanted, keys, n=1, cutoff=0.4)
    return found[0] if found else None


_FOREIGN_STORAGE = {
    "external_links": (
        FindingCode.external_link,
        "external link(s) into other files",
        "copy the linked data into this file (h5py: f[k] = src[k][()]) or drop the link; linked files are never opened",
    ),
    "external_storage": (
        FindingCode.external_storage,
        "dataset(s) keeping their data in external raw files",
        "rewrite the dataset with its data inside the HDF5 file (h5repack, or h5py without external=)",
    ),
    "virtual_datasets": (
        FindingCode.virtual_dataset,
        "virtual dataset(s) mapping data from other files",
        "materialise the dataset into this file (h5py: f[k] = vds[()]) before using it",
    ),
}


class RawEpisode(BaseModel):
    """The recorder episode contract. Build it with ``model_validate(facts, context={"settings": ...})``.

    Field validators check each dataset on its own; the model validator checks them against each other,
    once each is valid. Warnings are not part of validity: see ``warnings``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    kind: SourceKind = SourceKind.hdf5
    keys: list[str] = Field(description="Every dataset path in the file (of a bag: every topic).")
    external_links: list[str] = Field(default_factory=list)
    external_storage: list[str] = Field(default_factory=list)
    virtual_datasets: list[str] = Field(default_factory=list)
    cameras: dict[str, ArrayHeader | None] = Field(
        validate_default=True, description="Each camera's frames dataset by camera name (None: not in the file).")
    actions: ArrayHeader | None = Field(validate_default=True)
    action_values: np.ndarray | None = Field(None, description="The actions as read, when they could be read.")
    instruction: str | None = Field(None, validate_default=True)
    instruction_source: InstructionSource | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    # -- foreign storage: refused, because reading it would open files outside the dataset ------------
    @field_validator("external_links", "external_storage", "virtual_datasets")
    @classmethod
    def _no_foreign_storage(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if v:
            code, what, hint = _FOREIGN_STORAGE[info.field_name]
            raise _fail(code, f"{', '.join(v)}: {what}", hint, v[0])
        return v

    # -- the datasets ----------------------------------------------------------------------------------
    @staticmethod
    def _missing(info: ValidationInfo, wanted: str, which: str, camera: str | None = None) -> PydanticCustomError:
        """The finding for a dataset ``wanted`` that the file lacks: the closest dataset it has, and the fix."""
        settings: RecorderSettings = info.context["settings"]
        keys: list[str] = info.data.get("keys", [])
        known = KNOWN_FRAME_KEYS if which == "frames" else KNOWN_ACTION_KEYS
        candidates = [k for k in keys if k != wanted]
        cameras = [k for k in candidates if k.startswith(LEROBOT_CAMERA_PREFIX)] if which == "frames" else []
        near = (cameras[0] if len(cameras) == 1 else _closest(wanted, cameras, ()) or cameras[0] if cameras
                else _closest(wanted, candidates, known))  # a LeRobot dataset's cameras are its image features
        single = len(settings.cameras) == 1
        if near:
            message = f"no dataset `{wanted}`; found `{near}`; the recorder writes `{wanted}`"
            order = (KNOWN_COLOR_ORDERS.get(near) or ("rgb" if near.startswith(LEROBOT_CAMERA_PREFIX) else None)
                     if which == "frames" else None)
            where = "camera." if single else f"cameras[{camera}]."
            given = ({"actions_key": near} if which == "actions" else
                     {f"{where}key": near, f"{where}color_order": order or "bgr|rgb"})
            effect = "" if which == "actions" else (
                f"(that recorder layout stores {order.upper()} frames)" if order else
                "(the colour order that recorder stores its frames in: a red object must look red in "
                "`vla-data inspect-sample`)")
            hint, fixes = f"rename `{near}` to `{wanted}`", (Fix(given, effect),)
        else:
            have = ", ".join(f"`{k}`" for k in keys) or "no datasets at all"
            message = f"no dataset `{wanted}` (the file has {have})"
            setting = "actions_key" if which == "actions" else "camera.key" if single else f"cameras[{camera}].key"
            hint = f"record the {which} under `{wanted}`"
            fixes = (Fix({setting: "KEY"}, "with the name this recorder uses"),)
        if camera is not None and len(settings.cameras) > 1:
            message = f"camera {camera}: {message}"
        return _fail(FindingCode.dataset_missing, message, hint, wanted, *fixes)

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, v: dict[str, ArrayHeader | None], info: ValidationInfo) -> dict[str, ArrayHeader | None]:
        """Every camera of the settings: present (or an external link, reported as such), (T, H, W, 3) uint8."""
        settings: RecorderSettings = info.context["settings"]
        for camera in settings.cameras:
            h = v.get(camera.name)
            if h is None:
                if camera.key in info.data.get("external_links", []):
                    continue
                raise cls._missing(info, camera.key, "frames", camera.name)
            if len(h.shape) != 4:
                raise _fail(
                    FindingCode.wrong_rank,
                    f"`{h.key}` has shape {h.shape}; frames must be (T, H, W, 3)",
                    "store one HxWx3 image per frame, stacked along the first axis",
                    h.key,
                )
            if h.shape[-1] != 3:
                raise _fail(
                    FindingCode.wrong_channels,
                    f"`{h.key}` has {h.shape[-1]} channels; frames must have 3 (colour, no alpha)",
                    "drop the alpha channel / convert greyscale to 3 channels when recording",
                    h.key,
                )
            if h.dtype != "uint8":
                raise _fail(
                    FindingCode.wrong_dtype,
                    f"`{h.key}` is {h.dtype}; frames must be uint8",
                    "store frames as 8-bit images (0..255), as cv_bridge's bgr8 gives them",
                    h.key,
                )
        return v

    @field_validator("actions")
    @classmethod
    def _actions(cls, v: ArrayHeader | None, info: ValidationInfo) -> ArrayHeader | None:
        settings: RecorderSettings = info.context["settings"]
        if v is None:
            if settings.actions_key in info.data.get("external_links", []):
                return v
            raise cls._missing(info, settings.actions_key, "actions")
        if len(v.shape) != 2:
            raise _fail(
                FindingCode.wrong_rank,
                f"`{v.key}` has shape {v.shape}; actions must be (T, {settings.action_dim})",
                "store one row [linear_x, linear_y, angular_z] per frame",
                v.key,
            )
        if v.shape[1] != settings.action_dim:
            raise _fail(
                FindingCode.wrong_channels,
                f"`{v.key}` has {v.shape[1]} channels; this recorder writes {settings.action_dim}",
                f"record {settings.action_dim} channels per row",
                v.key,
                Fix({"action_dim": v.shape[1]}, f"if this recorder really writes {v.shape[1]} channels"),
            )
        if np.dtype(v.dtype).kind != "f":
            raise _fail(
                FindingCode.wrong_dtype,
                f"`{v.key}` is {v.dtype}; actions must be floating point (float32)",
                "store the Twist values as float32",
                v.key,
            )
        return v

    @field_validator("action_values")
    @classmethod
    def _finite(cls, v: np.ndarray | None, info: ValidationInfo) -> np.ndarray | None:
        if v is None or v.dtype.kind != "f" or v.size == 0:
            return v
        bad = ~np.isfinite(v)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=tuple(range(1, v.ndim))))
            key = info.context["settings"].actions_key
            raise _fail(
                FindingCode.nonfinite_action,
                f"`{key}` holds {int(bad.sum())} NaN/Inf value(s), first at row {int(rows[0])}",
                "re-record the episode or drop it; a NaN target poisons every gradient it touches",
                key,
            )
        return v

    @field_validator("instruction")
    @classmethod
    def _instruction(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not v.strip():
            settings: RecorderSettings = info.context["settings"]
            if info.data.get("kind") == SourceKind.rosbag2:
                bag = settings.bag
                raise _fail(
                    FindingCode.instruction_missing,
                    f"no instruction: no message on {bag.instruction_topic}, no `{bag.instruction_metadata_key}` in "
                    f"the bag's metadata, not in {settings.index_csv_name}, no instruction setting, and the bag's "
                    "name names no target side",
                    f"add a row (episode_path, instruction) to {settings.index_csv_name} beside the bags, or record a "
                    f"std_msgs/String on {bag.instruction_topic}",
                    bag.instruction_topic,
                    Fix({"instruction": "TEXT"}),
                )
            raise _fail(
                FindingCode.instruction_missing,
                f"no instruction: not in `{settings.instruction_key}`, not in {settings.index_csv_name}, "
                "and the file name names no target side",
                f"write `{settings.instruction_key}`, or add a row (episode_path, instruction) to "
                f"{settings.index_csv_name} beside the episodes",
                settings.instruction_key,
            )
        return v

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        actions = self.actions
        cameras = [(name, h) for name, h in self.cameras.items() if h is not None]
        if not cameras or actions is None or len(cameras) < len(self.cameras):
            return self
        for name, frames in cameras:
            if frames.shape[0] != actions.shape[0]:
                which = f"camera {name}: " if len(cameras) > 1 else ""
                raise _fail(
                    FindingCode.length_mismatch,
                    f"{which}{frames.shape[0]} frames (`{frames.key}`) but {actions.shape[0]} action rows",
                    "every frame of every camera needs exactly one action row (row 0 is the all-zero "
                    "episode_start); re-export the episode",
                    frames.key if len(cameras) > 1 else actions.key,
                )
        frames = cameras[0][1]
        if frames.shape[0] == 0:
            raise _fail(
                FindingCode.empty_episode,
                "the episode has no frames",
                "delete the file; the collector never saves episodes of fewer than 2 frames",
                frames.key,
            )
        return self

    # -- turning the contract into findings ------------------------------------------------------------
    @classmethod
    def findings_for(cls, facts: dict[str, Any], settings: RecorderSettings) -> tuple[RawEpisode | None, list[Finding]]:
        """Validate ``facts`` read from a file; return the episode (None if invalid) and its error findings."""
        try:
            return cls.model_validate(facts, context={"settings": settings}), []
        except ValidationError as exc:
            findings = []
            for err in exc.errors(include_url=False):
                ctx = err.get("ctx") or {}
                try:
                    code = FindingCode(err["type"])
                except ValueError:  # a plain type error in the facts themselves: a reader bug, still reported
                    code, ctx = FindingCode.corrupt_file, {"hint": "report this file to the vla-data maintainers"}
                findings.append(
                    Finding(code=code, file=facts["path"], key=ctx.get("key"), message=err["msg"], hint=ctx["hint"],
                            fixes=ctx.get("fixes", ()))
                )
            return None, findings

    @property
    def n_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def frames(self) -> ArrayHeader:
        """The first (default) camera's frames."""
        first = next(iter(self.cameras.values()))
        assert first is not None
        return first

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.frames.shape[1], self.frames.shape[2]

    @property
    def frame_sizes(self) -> dict[str, tuple[int, int]]:
        """(H, W) of each camera's frames, by camera name."""
        return {name: (h.shape[1], h.shape[2]) for name, h in self.cameras.items() if h is not None}

    def warnings(self, settings: RecorderSettings, spec: WindowSpec) -> list[Finding]:
        """Per-file warnings and infos for a valid episode."""
        out: list[Finding] = []
        t = self.n_frames
        declared = self.attributes.get("num_frames")
        if declared is not None and _as_int(declared) != t:
            out.append(
                Finding(
                    code=FindingCode.num_frames_mismatch,
                    file=self.path,
                    key="num_frames",
                    message=f"attribute num_frames={declared} but the episode holds {t} frames",
                    hint="the data wins; fix the attribute if other tools read it",
                )
            )
        if self.action_values is not None and self.action_values.size:
            peak = float(np.abs(self.action_values).max())
            if peak > settings.action_bound:
                out.append(
                    Finding(
                        code=FindingCode.action_out_of_bounds,
                        file=self.path,
                        key=self.actions.key if self.actions else settings.actions_key,
                        message=f"|action| reaches {peak:.3g}, beyond the bound {settings.action_bound:g}",
                        hint="check the units (teleop sends +-1.15)",
                        fixes=(Fix({"action_bound": f"{math.ceil(peak * 10) / 10:g}"}, "if this speed is real"),),
                    )
                )
        full = full_windows(t, spec)
        if full == 0:
            out.append(
                Finding(
                    code=FindingCode.short_episode,
                    file=self.path,
                    key=self.frames.key,
                    message=(
                        f"{t} frames give {t} samples at window {spec.window} / chunk {spec.chunk}, none of them "
                        f"without padding (that needs {spec.window + spec.chunk + spec.action_offset - 1} frames)"
                    ),
                    hint="fine for training (pad masks cover it); record longer episodes for more full windows",
                )
            )
        own = {SourceKind.rosbag2: (InstructionSource.topic, InstructionSource.metadata),
               SourceKind.lerobot: (InstructionSource.task,)}.get(self.kind, (InstructionSource.file,))
        if self.instruction_source is not None and self.instruction_source not in own:
            bag = settings.bag
            key, hint = (bag.instruction_topic, f"record it on {bag.instruction_topic} (std_msgs/String) or as the "
                         f"bag's custom data `{bag.instruction_metadata_key}` to make the bag self-contained") \
                if self.kind == SourceKind.rosbag2 else (
                settings.instruction_key, f"write `{settings.instruction_key}` into the file to make it self-contained")
            out.append(
                Finding(
                    code=FindingCode.instruction_fallback,
                    file=self.path,
                    key=key,
                    message=f"instruction taken from the {self.instruction_source.value.replace('_', ' ')}",
                    hint=hint,
                )
            )
        return out


def full_windows(n_frames: int, spec: WindowSpec) -> int:
    """Anchors of an episode whose window and action chunk need no padding (every frame is an anchor)."""
    return max(0, n_frames - (spec.window - 1) - (spec.chunk + spec.action_offset - 1))


def _as_int(value: Any) -> int | None:
    try:
        f = float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return int(f) if math.isfinite(f) else None
