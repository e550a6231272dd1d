"""A LeRobotDataset v3.0 folder (``schemas.lerobot``) as a source: one source, many episodes, each named
``DIR#k`` (k its ``episode_index``), as a cut bag's are ``BAG#k``.

The mapping (the reverse of ``vla_data.lerobot.writer``'s): a camera's key in the settings is its LeRobot feature
(``observation.images.front``), whose frames are RGB whatever the settings' colour order says (that order is the
robot's live camera's, kept for inference); the actions are the ``actions_key`` feature (``action`` in every
LeRobot dataset); LeRobot's action at frame t (the command sent after seeing frame t) becomes the row
t + ``lerobot.action_offset``, the first rows zero velocity (nothing was commanded before the first frame) and the
last ``offset`` actions left out (no frame follows them); the task is the instruction; the timestamps are the
frame stamps. Frames are read when asked: PNG images from the data files (one row group per episode), video
through PyAV (the ``lerobot`` extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import ValidationError

from schemas import ArrayHeader, ColorOrder, Finding, FindingCode, RecorderSettings, SourceKind
from schemas.lerobot import (
    CODEBASE_VERSION,
    EPISODES_PATH,
    EXPORT_FILE,
    INFO_FILE,
    TASKS_FILE,
    VIDEO_PATH,
    LeRobotExport,
    LeRobotInfo,
)
from vla_client.preprocess import decode_rgb
from vla_data.sources.content_hash import fingerprint
from vla_data.sources.episode import Frames, SourceEpisode, SourceError

_finding = Finding.of
PART = "#"
TIMESTAMP_TOLERANCE_S = 1e-4  # LeRobot's reader's: a frame further from frame_index / fps is not found


HUB_PREFIX = "hf://datasets/"  # a dataset of the Hugging Face hub, read from this machine's caches only


def is_lerobot(path: Path) -> bool:
    return path.is_dir() and (path / INFO_FILE).is_file()


def cached_dataset(ref: str) -> Path:
    """``hf://datasets/ORG/NAME`` as the folder already on this machine: LeRobot's own copy ($HF_LEROBOT_HOME/ORG/NAME,
    by default ~/.cache/huggingface/lerobot/ORG/NAME), else the hub cache's snapshot of it. Nothing is downloaded;
    ``SourceError`` naming both places when it is in neither."""
    repo_id = ref.removeprefix(HUB_PREFIX).strip("/")
    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "lerobot"
    lerobot = Path(os.environ.get("HF_LEROBOT_HOME", home)).expanduser() / repo_id
    if is_lerobot(lerobot):
        return lerobot
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # comes with transformers; a vla-data without it reads local folders
        raise SourceError(f"{ref}: the hub cache cannot be read here ({exc}); give the dataset's folder") from exc
    try:
        snapshot = Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True,
                                          cache_dir=os.environ.get("HF_HUB_CACHE")))  # read now, not at import
    except (LocalEntryNotFoundError, ValueError, OSError) as exc:
        raise SourceError(f"{ref}: not on this machine (neither {lerobot} nor the hub cache has it; nothing is "
                          f"downloaded): download it first (huggingface_hub.snapshot_download('{repo_id}', "
                          f"repo_type='dataset')), or give the dataset's folder ({type(exc).__name__})") from None
    if not is_lerobot(snapshot):
        raise SourceError(f"{ref}: the hub cache's copy ({snapshot}) has no {INFO_FILE}: not a LeRobot v3.0 dataset, "
                          "or only part of it was downloaded")
    return snapshot


def split_ref(ref: str) -> tuple[Path, int | None]:
    """``DIR#k`` -> (DIR, k); ``DIR`` -> (DIR, None)."""
    base, mark, part = ref.rpartition(PART)
    if mark and part.isdigit():
        return Path(base), int(part)
    return Path(ref), None


def require_av():  # -> the av module; PyAV is the lerobot extra, imported only here
    try:
        import av
    except ImportError as exc:
        raise ImportError(f"video needs PyAV ({exc}): pip install 'vla-data[lerobot]', or export PNG images "
                          "instead") from exc
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr below errors otherwise
    return av


def read_video(path: Path, start_s: float, count: int, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` frames of ``path`` from ``start_s`` on -> ((n, H, W, 3) uint8 RGB, (n,) their timestamps in
    seconds); n < count where the file ends early."""
    av = require_av()
    first = round(start_s * fps)
    frames, stamps = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if first > 0:
            container.seek(int(Fraction(first, fps) / stream.time_base), stream=stream, backward=True)
        for picture in container.decode(stream):
            if picture.pts is None:
                continue
            at = float(picture.pts * picture.time_base)
            index = round(at * fps)
            if index < first:
                continue
            if index >= first + count:
                break
            frames.append(picture.to_ndarray(format="rgb24"))
            stamps.append(at)
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0)
    return np.stack(frames), np.asarray(stamps, np.float64)


@dataclass(frozen=True)
class LeRobotMeta:
    """What a LeRobot folder's meta files say."""

    root: Path
    info: LeRobotInfo
    tasks: list[str]
    episodes: pd.DataFrame  # one row per episode, in episode_index order



def data_files(root: Path) -> list[Path]:
    """The folder's data parquet files, in the order LeRobot reads them (its episodes' rows, in index order)."""
    return sorted(root.glob("data/*/*.parquet"))


def read_export(root: Path) -> LeRobotExport | None:
    """``meta/vla_data.json`` of a folder `vla-data export-lerobot` wrote; None where there is none (or another's)."""
    try:
        return LeRobotExport.model_validate_json((root / EXPORT_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def read_meta(root: Path) -> LeRobotMeta | Finding:
    """The folder's info, tasks and episode table; or the finding why they cannot be read."""
    try:
        info = LeRobotInfo.model_validate_json((root / INFO_FILE).read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        return _finding(FindingCode.corrupt_file, root, INFO_FILE, f"{INFO_FILE} cannot be read as LeRobot's: "
                        f"{str(exc).splitlines()[0]}", "copy the dataset again, or rewrite it with LeRobot")
    if info.codebase_version.split(".")[0] != CODEBASE_VERSION.split(".")[0]:
        return _finding(FindingCode.unsupported_message, root, INFO_FILE,
                        f"a LeRobot dataset {info.codebase_version}; vla-data reads {CODEBASE_VERSION}",
                        "convert it with LeRobot's convert_dataset_v21_to_v30 first")
    try:
        tasks = pd.read_parquet(root / TASKS_FILE)
        episodes = pd.concat([pd.read_parquet(p) for p in sorted(root.glob("meta/episodes/*/*.parquet"))])
    except (OSError, ValueError) as exc:
        return _finding(FindingCode.corrupt_file, root, TASKS_FILE, f"the meta files cannot be read: {exc}",
                        f"{TASKS_FILE} and {EPISODES_PATH.format(chunk_index=0, file_index=0)} must be LeRobot's")
    names = [str(t) for t in tasks.sort_values("task_index").index] if "task_index" in tasks else []
    return LeRobotMeta(root, info, names, episodes.sort_values("episode_index").reset_index(drop=True))


@dataclass(frozen=True)
class LeRobotFrames:
    """One camera's frames of one episode: PNG rows of the data files, or a span of a video file."""

    root: Path
    key: str
    episode: int
    video: Path | None = None  # the mp4 holding the episode (video features)
    start_s: float = 0.0  # where the episode starts in it
    fps: int = 1

    def read(self, start: int, stop: int) -> Frames:
        if self.video is not None:
            frames, _ = read_video(self.video, self.start_s + start / self.fps, stop - start, self.fps)
            if len(frames) < stop - start:
                raise SourceError(f"{self.video}: frames {start}..{stop - 1} of episode {self.episode} are not all "
                                  f"there ({len(frames)} decoded)")
            return Frames(frames, ColorOrder.rgb)
        return Frames(np.stack([decode_rgb(b) for b in self.png_bytes()[start:stop]]), ColorOrder.rgb)

    def png_bytes(self) -> list[bytes]:
        """The episode's stored image bytes, in frame order (not decoded)."""
        rows = []
        for path in data_files(self.root):
            table = pq.read_table(path, columns=[self.key, "frame_index"], filters=[("episode_index", "==", self.episode)])
            rows += zip(table.column("frame_index").to_pylist(), table.column(self.key).to_pylist(), strict=True)
        return [cell["bytes"] for _, cell in sorted(rows, key=lambda r: r[0])]


@dataclass(frozen=True)
class LeRobotEpisode:
    """One episode of a LeRobot folder, as validation and the build see it."""

    ref: str
    meta: LeRobotMeta
    index: int
    actions: np.ndarray  # (T, A) rows, the offset applied
    timestamps: np.ndarray  # (T,) seconds
    instruction: str | None
    cameras: dict[str, LeRobotFrames]  # by camera name, for the settings' cameras the folder has
    headers: dict[str, ArrayHeader | None]  # None: the folder has no such feature

    def fingerprint(self) -> str:
        """sha256 over the rows and each camera's stored bytes (PNG), or its decoded pixels (video)."""
        if not self.cameras:
            raise SourceError(f"{self.ref}: none of the settings' cameras is a feature of the dataset")
        parts = []
        for name, frames in self.cameras.items():
            header = self.headers[name]
            assert header is not None
            stored = (frames.png_bytes() if frames.video is None
                      else [frames.read(0, header.shape[0]).pixels.tobytes()])
            parts.append((header, stored))
        return fingerprint(self.actions, parts)


def read_lerobot(root: Path, settings: RecorderSettings) -> list[LeRobotEpisode] | list[Finding]:
    """Every episode of the folder, or the findings that stop it giving any."""
    meta = read_meta(root)
    if isinstance(meta, Finding):
        return [meta]
    info = meta.info
    columns = [c for c in (settings.actions_key, "timestamp", "frame_index", "episode_index", "task_index")
               if c in info.features]
    try:
        table = pd.concat([pq.read_table(p, columns=columns).to_pandas() for p in data_files(root)])
    except (OSError, ValueError) as exc:
        return [_finding(FindingCode.corrupt_file, root, "data", f"the data files cannot be read: {exc}",
                         "copy the dataset again")]
    offset = settings.lerobot.action_offset
    episodes = []
    for k, rows in table.groupby("episode_index", sort=True):
        rows = rows.sort_values("frame_index")
        n = len(rows)
        action = (np.stack(rows[settings.actions_key].to_numpy()).astype(np.float32)
                  if settings.actions_key in rows else np.zeros((n, 0), np.float32))
        shifted = np.zeros_like(action)
        shifted[offset:] = action[: max(n - offset, 0)]
        task = int(rows["task_index"].iloc[0]) if "task_index" in rows else None
        cameras, headers = {}, {}
        for camera in settings.cameras:
            feature = info.cameras.get(camera.key)
            if feature is None:
                headers[camera.name] = None
                continue
            height, width = feature.shape[0], feature.shape[1]
            headers[camera.name] = ArrayHeader(key=camera.key, shape=(n, height, width, 3), dtype="uint8")
            cameras[camera.name] = _frames(meta, camera.key, int(k))
        episodes.append(LeRobotEpisode(
            f"{root}{PART}{int(k)}", meta, int(k), shifted, rows["timestamp"].to_numpy(np.float64),
            meta.tasks[task] if task is not None and 0 <= task < len(meta.tasks) else None, cameras, headers))
    return episodes or [_finding(FindingCode.empty_episode, root, "data", "the dataset holds no frame",
                                 "export or record episodes into it first")]


def _frames(meta: LeRobotMeta, key: str, episode: int) -> LeRobotFrames:
    if meta.info.features[key].dtype != "video":
        return LeRobotFrames(meta.root, key, episode)
    row = meta.episodes.loc[meta.episodes["episode_index"] == episode].iloc[0]
    path = meta.root / (meta.info.video_path or VIDEO_PATH).format(
        video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]), file_index=int(row[f"videos/{key}/file_index"]))
    return LeRobotFrames(meta.root, key, episode, path, float(row[f"videos/{key}/from_timestamp"]), meta.info.fps)


class LeRobotFormat:
    """LeRobotDataset v3.0 folders (meta/info.json): many episodes, DIR#k."""

    kind = SourceKind.lerobot

    def claims(self, path: Path) -> bool:
        return is_lerobot(path)

    def source_of(self, ref: str) -> Path | None:
        root, _ = split_ref(ref)
        return root if is_lerobot(root) else None

    def read(self, source: Path, settings: RecorderSettings, identify: bool) -> list[SourceEpisode]:
        read = read_lerobot(source, settings)
        if read and isinstance(read[0], Finding):
            raise SourceError.of(source, read[0])
        return [SourceEpisode(e.ref, SourceKind.lerobot, e.actions, dict(e.cameras),  # type: ignore[arg-type]
                              e.fingerprint() if identify else None, np.round(e.timestamps * 1e9).astype(np.int64))
                for e in read]  # type: ignore[union-attr]


LEROBOT = LeRobotFormat()
