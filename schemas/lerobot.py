"""LeRobotDataset v3.0, the format `vla-data export-lerobot` writes: its files, what each holds, and how a store's
episodes map onto it (see README, "LeRobot datasets").

```
DIR/meta/info.json                                   LeRobotInfo: features, fps, counts, path templates, splits
DIR/meta/stats.json                                  per feature: min, max, mean, std, count, q01 .. q99
DIR/meta/tasks.parquet                               the task strings (the pandas index) and their task_index
DIR/meta/episodes/chunk-000/file-000.parquet         one row per episode: its task, length, rows, video span
DIR/data/chunk-000/file-000.parquet                  one row per frame: action, timestamp, indices (+ PNG frames)
DIR/videos/observation.images.<camera>/chunk-000/file-000.mp4    with --video: one stream per camera
DIR/meta/vla_data.json                               LeRobotExport: the store version exported, the mapping
DIR/meta/splits.csv                                  each episode's split: build-splits DIR --split-file DIR/meta/splits.csv
```
LeRobot's reader (lerobot 0.4 and the standalone ``lerobot-dataset``) requires: ``total_frames`` equal to the rows;
the data files' columns exactly the non-video features; ``index`` the global row number; episode rows in
``episode_index`` order with ``dataset_from_index`` / ``dataset_to_index``; the task string as ``tasks.parquet``'s
index; and each video frame's timestamp within 1e-4 s of ``from_timestamp + frame_index / fps``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.history import DataPin
from schemas.recorder import LEROBOT_CAMERA_PREFIX
from schemas.store import Split

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk-XXX folder
DATA_FILE_MB = 100  # a data file is closed before an episode would take it past this
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_FILE, STATS_FILE, TASKS_FILE = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
EXPORT_FILE = "meta/vla_data.json"  # ours: LeRobot reads only the files above
SPLITS_FILE = "meta/splits.csv"  # ours: each episode's split, as build-splits' split file (episode DIR#k, split)

CAMERA_PREFIX = LEROBOT_CAMERA_PREFIX  # a camera named c is the feature observation.images.c
ACTION_KEY = "action"
# every LeRobot dataset's own per-frame columns, after its features
INDEX_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                  "task_index": "int64"}
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}  # LeRobot's stats.json quantiles
EXPORT_FORMAT = 1


class FrameStorage(StrEnum):
    images = "images"  # PNG in the data files (lossless: a build from the export gives the same frames)
    video = "video"  # one AV1 mp4 stream per camera (LeRobot's default; lossy)


class LeRobotExportOptions(BaseModel):
    """`vla-data export-lerobot`'s settings."""

    model_config = ConfigDict(extra="forbid")

    storage: FrameStorage = Field(FrameStorage.images, description="How frames are written: PNG images in the data "
                                  "files (exact), or video (one mp4 per camera, smaller, lossy).")
    fps: int | None = Field(None, ge=1, description="The recording's frame rate. None: from the episodes' stamps "
                            "(ROS 2 bags); HDF5 recordings carry no clock, so it must be given.")
    robot_type: str | None = Field(None, description="info.json's robot_type (free text, e.g. `turtlebot4`).")
    repo_id: str = Field("local/vla-data", pattern=r"^[\w.-]+/[\w.-]+$",
                         description="The name LeRobot loads it under: LeRobotDataset(repo_id, root=DIR).")
    action_offset: int = Field(1, ge=0, description="LeRobot's `action` at frame t is the store's row t+offset: "
                               "what the robot did after seeing frame t (the recorder sends, then grabs).")
    video_crf: int = Field(30, ge=0, le=63, description="With video: the AV1 quality (LeRobot's default 30; lower "
                           "is closer to the frames and larger).")


class LeRobotFeature(BaseModel):
    """One entry of info.json's ``features``."""

    model_config = ConfigDict(extra="forbid")

    dtype: str = Field(description="float32, int64, image, video, string, ...")
    shape: list[int] = Field(description="Per frame; a camera's is [H, W, 3].")
    names: list[str] | dict[str, list[str]] | None = None
    info: dict[str, object] | None = Field(None, description="A video's stream: codec, pix_fmt, fps, size.")


class LeRobotInfo(BaseModel):
    """``meta/info.json``: LeRobot's own keys (a newer LeRobot's extra keys are kept as read)."""

    model_config = ConfigDict(extra="allow")

    codebase_version: str
    robot_type: str | None = None
    total_episodes: int = Field(ge=0)
    total_frames: int = Field(ge=0)
    total_tasks: int = Field(ge=0)
    chunks_size: int = CHUNKS_SIZE
    data_files_size_in_mb: int = DATA_FILE_MB
    video_files_size_in_mb: int = VIDEO_FILE_MB
    fps: int = Field(ge=1, description="Frames per second (LeRobot's converter and writer keep an int).")
    splits: dict[str, str] = Field(default_factory=dict, description="Episode ranges `start:end` by split name "
                                   "(LeRobot's loader does not read them; it selects episodes by index).")
    data_path: str = DATA_PATH
    video_path: str | None = None
    features: dict[str, LeRobotFeature]

    @property
    def cameras(self) -> dict[str, LeRobotFeature]:
        """The image and video features, by feature name."""
        return {k: f for k, f in self.features.items() if f.dtype in (FrameStorage.video.value, "image")}


class ExportedEpisode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_index: int
    store_episode: int = Field(description="Its row in the store's episode table.")
    content_hash: str
    split: Split
    source_path: str


class LeRobotExport(BaseModel):
    """``meta/vla_data.json``: what the export came from and how it maps, for a person or a later import."""

    model_config = ConfigDict(extra="forbid")

    format: int = EXPORT_FORMAT
    tool_version: str
    data: DataPin = Field(description="The exact store version exported.")
    repo_id: str
    storage: FrameStorage
    fps: int
    action_offset: int
    action_names: list[str]
    cameras: dict[str, str] = Field(description="LeRobot feature -> store camera.")
    stats_split: Split = Field(description="stats.json is computed over this split's frames only (LeRobot's own "
                               "writer uses every frame).")
    unrecorded_actions: str = Field(description="What the last frames' `action` holds, where the recording has no "
                                    "row t+offset.")
    episodes: list[ExportedEpisode]
