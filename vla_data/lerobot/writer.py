"""A store version written as a LeRobotDataset v3.0 folder (``schemas.lerobot`` names every file).

The mapping, in one place:
- episodes: the train split's first, then val, then test, each in the store's order; ``info.json``'s ``splits``
  gives each split's range of ``episode_index`` (LeRobot's loader selects episodes by index; its
  ``split_dataset`` tool makes one dataset per split);
- cameras: the store camera ``c`` is the feature ``observation.images.c``, its frames exactly as the store holds
  them (RGB, the store's S x S): PNG in the data files, or one AV1 stream per camera;
- ``action`` at frame t is the store's row t + offset, the command the robot sent after seeing frame t (LeRobot's
  convention); the last ``offset`` frames of an episode have no recorded row after them and get zero velocity;
- tasks are the instructions; ``stats.json`` is computed over the train split's frames only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from schemas.lerobot import (
    ACTION_KEY,
    CAMERA_PREFIX,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILE_MB,
    DATA_PATH,
    EPISODES_PATH,
    EXPORT_FILE,
    INDEX_FEATURES,
    INFO_FILE,
    SPLITS_FILE,
    STATS_FILE,
    TASKS_FILE,
    VIDEO_PATH,
    ExportedEpisode,
    FrameStorage,
    LeRobotExport,
    LeRobotExportOptions,
    LeRobotFeature,
    LeRobotInfo,
)
from schemas.store import EpisodeRecord, Split
from vla_data import __version__
from vla_data.lerobot.stats import PixelStats, vector_stats
from vla_data.lerobot.video import CameraVideo, check_size
from vla_data.store.reader import DatasetStore, pin

STATS_SPLIT = Split.train
UNRECORDED = "zero velocity: the recording has no row t+offset after an episode's last frames"
PNG_LEVEL = 1  # zlib level of the PNG frames: 6 (LeRobot's) makes files about 10% smaller and the export 3x slower


def export_order(store: DatasetStore) -> tuple[list[EpisodeRecord], dict[str, str]]:
    """The store's episodes in export order (train, val, test) and each non-empty split's index range."""
    records = store.records()
    ordered, splits = [], {}
    for split in Split:
        chosen = [r for r in records if r.split == split]
        if chosen:
            splits[split.value] = f"{len(ordered)}:{len(ordered) + len(chosen)}"
            ordered += chosen
    return ordered, splits


def shifted_actions(rows: np.ndarray, offset: int) -> np.ndarray:
    """(n, A) recorded rows -> (n, A) LeRobot actions: frame t gets row t + offset, the last ``offset`` frames zero."""
    out = np.zeros_like(rows, dtype=np.float32)
    if offset < len(rows):
        out[: len(rows) - offset] = rows[offset:]
    return out


def png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


class DataFiles:
    """The data parquet files, one row group per episode, a new file when the next episode would pass
    ``DATA_FILE_MB`` (an episode is never split)."""

    def __init__(self, root: Path, schema: pa.Schema) -> None:
        self.root, self.schema = root, schema
        self.index, self.bytes, self.writer = 0, 0, None

    def add(self, table: pa.Table) -> tuple[int, int]:
        size = table.nbytes
        if self.writer is not None and self.bytes + size > DATA_FILE_MB * 2**20:
            self.close()
            self.index += 1
        if self.writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self.index // CHUNKS_SIZE,
                                                file_index=self.index % CHUNKS_SIZE)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer, self.bytes = pq.ParquetWriter(path, self.schema, compression="snappy"), 0
        self.writer.write_table(table, row_group_size=max(len(table), 1))
        self.bytes += size
        return self.index // CHUNKS_SIZE, self.index % CHUNKS_SIZE

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _schema(store: DatasetStore, storage: FrameStorage) -> pa.Schema:
    action_dim = store.manifest.action_feature.shape[0]
    fields = [pa.field(ACTION_KEY, pa.list_(pa.float32(), action_dim))]
    if storage == FrameStorage.images:
        image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        fields += [pa.field(CAMERA_PREFIX + c.name, image) for c in store.cameras]
    fields += [pa.field(name, pa.float32() if dtype == "float32" else pa.int64()) for name, dtype in INDEX_FEATURES.items()]
    return pa.schema(fields)


def write_lerobot(store: DatasetStore, root: Path, name: str, options: LeRobotExportOptions, fps: int,
                  progress: Callable[[int], None] = lambda n: None) -> LeRobotExport:
    """Write ``store`` as a LeRobotDataset v3.0 into the empty folder ``root`` (to be published as the folder
    ``name``: the split file names its episodes ``name#k``) at ``fps`` frames per second; ``progress`` is told the
    frames of each episode written."""
    ordered, splits = export_order(store)
    if STATS_SPLIT.value not in splits:
        raise ValueError(f"{store.location}: no {STATS_SPLIT.value} episodes, and stats.json is computed over them")
    tasks = list(dict.fromkeys(r.instruction for r in ordered))
    task_index = {t: i for i, t in enumerate(tasks)}
    cameras = {CAMERA_PREFIX + c.name: c for c in store.cameras}
    arrays = {key: store.camera(c.name) for key, c in cameras.items()}
    if options.storage == FrameStorage.video:
        for camera in store.cameras:
            check_size(camera.shape[0], camera.shape[1], camera.name)
    videos = ({key: CameraVideo(root, key, fps, options.video_crf) for key in cameras}
              if options.storage == FrameStorage.video else {})
    schema = _schema(store, options.storage)
    data = DataFiles(root, schema)
    pixels = {key: PixelStats() for key in cameras}
    train_values: dict[str, list[np.ndarray]] = {name: [] for name in [ACTION_KEY, *INDEX_FEATURES]}
    episodes, exported = [], []
    index = 0
    try:
        for i, record in enumerate(ordered):
            a, b = store.episode_range(record.episode)
            n = b - a
            columns: dict[str, object] = {ACTION_KEY: shifted_actions(store.action[a:b], options.action_offset)}
            row = {"episode_index": i, "tasks": [record.instruction], "length": n,
                   "dataset_from_index": index, "dataset_to_index": index + n}
            for key in cameras:
                frames = arrays[key][a:b]
                if record.split == STATS_SPLIT:
                    pixels[key].add(frames)
                if key in videos:
                    chunk, file, start, stop = videos[key].add(frames)
                    row |= {f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                            f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": stop}
                else:
                    columns[key] = [{"bytes": png(f), "path": f"frame-{t:06d}.png"} for t, f in enumerate(frames)]
            columns |= {"timestamp": np.arange(n, dtype=np.float32) / np.float32(fps),
                        "frame_index": np.arange(n), "episode_index": np.full(n, i),
                        "index": np.arange(index, index + n), "task_index": np.full(n, task_index[record.instruction])}
            table = pa.table({f.name: pa.array(_column(columns[f.name]), f.type) for f in schema}, schema=schema)
            row["data/chunk_index"], row["data/file_index"] = data.add(table)
            if record.split == STATS_SPLIT:
                for column, values in train_values.items():
                    values.append(np.asarray(columns[column]))
            episodes.append(row)
            exported.append(ExportedEpisode(episode_index=i, store_episode=record.episode,
                                            content_hash=record.content_hash, split=record.split,
                                            source_path=record.source_path))
            index += n
            progress(n)
    finally:
        data.close()
        for video in videos.values():
            video.close()

    features = {ACTION_KEY: LeRobotFeature(dtype="float32", shape=[store.manifest.action_feature.shape[0]],
                                           names=list(store.manifest.actions.names))}
    for key, camera in cameras.items():
        height, width = camera.shape[0], camera.shape[1]
        features[key] = LeRobotFeature(dtype=options.storage.value if key in videos else "image",
                                       shape=[height, width, 3], names=["height", "width", "channels"],
                                       info=videos[key].info(height, width) if key in videos else None)
    features |= {name: LeRobotFeature(dtype=dtype, shape=[1]) for name, dtype in INDEX_FEATURES.items()}
    info = LeRobotInfo(codebase_version=CODEBASE_VERSION, robot_type=options.robot_type,
                       total_episodes=len(ordered), total_frames=index, total_tasks=len(tasks), fps=fps,
                       splits=splits, video_path=VIDEO_PATH if videos else None, features=features)
    written = info.model_dump(mode="json")
    for feature in written["features"].values():
        if feature["info"] is None:
            del feature["info"]  # LeRobot writes `info` for a video only
    _write_json(root / INFO_FILE, written)
    _write_json(root / STATS_FILE, _stats(train_values, pixels))
    pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks, name="task")).to_parquet(root / TASKS_FILE)
    table = pd.DataFrame(episodes)
    table["meta/episodes/chunk_index"], table["meta/episodes/file_index"] = 0, 0
    (root / EPISODES_PATH.format(chunk_index=0, file_index=0)).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(root / EPISODES_PATH.format(chunk_index=0, file_index=0), index=False)
    export = LeRobotExport(tool_version=__version__, data=pin(store), repo_id=options.repo_id,
                           storage=options.storage, fps=fps, action_offset=options.action_offset,
                           action_names=list(store.manifest.actions.names),
                           cameras={key: c.name for key, c in cameras.items()}, stats_split=STATS_SPLIT,
                           unrecorded_actions=UNRECORDED, episodes=exported)
    (root / EXPORT_FILE).write_text(export.model_dump_json(indent=2) + "\n")
    pd.DataFrame({"episode": [f"{name}#{e.episode_index}" for e in exported],
                  "split": [e.split.value for e in exported]}).to_csv(root / SPLITS_FILE, index=False)
    return export


def _column(values: object) -> object:
    return list(values) if isinstance(values, np.ndarray) and values.ndim == 2 else values


def _stats(train: dict[str, list[np.ndarray]], pixels: dict[str, PixelStats]) -> dict[str, dict]:
    """stats.json: the action and every index column over the train split's frames, and each camera's pixels."""
    stats = {name: vector_stats(np.concatenate(values)) for name, values in train.items()}
    return stats | {key: p.stats() for key, p in pixels.items()}


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=4) + "\n")
