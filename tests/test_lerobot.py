"""`vla-data export-lerobot`: the files are LeRobotDataset v3.0 as LeRobot's reader requires them (checked here with
pyarrow against the format; LeRobot's own reader reads them in benchmarks/lerobot.py, which needs its own
environment), and they hold the store's frames (exact as PNG, close as video), its actions at the stated offset,
its instructions, splits and train-only stats; careless uses are refused or repaired."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import SMALL, run_cli as run
from schemas.lerobot import (
    CAMERA_PREFIX,
    DATA_PATH,
    EPISODES_PATH,
    EXPORT_FILE,
    INDEX_FEATURES,
    INFO_FILE,
    STATS_FILE,
    TASKS_FILE,
    VIDEO_PATH,
    LeRobotExport,
    LeRobotInfo,
)
from vla_data.store.reader import open_store

FPS = 5


@pytest.fixture(scope="module")
def exported(learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lerobot") / "images"
    code, text = run("export-lerobot", str(learn_store), "-o", str(out), "--fps", str(FPS), "--robot-type", "tb4")
    assert code == 0 and "LeRobotDataset('local/vla-data'" in text, text
    return out


def episodes_in_export_order(store) -> list:
    records = store.records()
    return [r for split in ("train", "val", "test") for r in records if r.split == split]


def test_the_files_are_lerobot_v3_as_its_reader_requires(exported: Path, learn_store: Path) -> None:
    store = open_store(learn_store)
    order = episodes_in_export_order(store)
    info = LeRobotInfo.model_validate_json((exported / INFO_FILE).read_text())
    n = int(store.episodes["n_frames"].sum())
    assert (info.codebase_version, info.fps, info.robot_type, info.total_episodes, info.total_frames) == (
        "v3.0", FPS, "tb4", len(order), n)
    assert info.total_tasks == len({r.instruction for r in order}) and info.video_path is None
    n_train = sum(r.split == "train" for r in order)
    assert info.splits == {"train": f"0:{n_train}", "val": f"{n_train}:{len(order)}"}
    camera = CAMERA_PREFIX + "rgb"
    assert list(info.features) == ["action", camera, *INDEX_FEATURES]
    assert info.features["action"].names == ["linear_x", "linear_y"] and info.features[camera].dtype == "image"
    assert info.features[camera].shape == [56, 56, 3] and "info" not in json.loads(
        (exported / INFO_FILE).read_text())["features"][camera]

    data = pq.read_table(exported / DATA_PATH.format(chunk_index=0, file_index=0))
    assert data.column_names == list(info.features)  # exactly the non-video features, nothing else
    assert str(data.schema.field("action").type) == "fixed_size_list<element: float>[2]"
    assert str(data.schema.field(camera).type) == "struct<bytes: binary, path: string>"
    assert data.num_rows == n and data.column("index").to_pylist() == list(range(n))
    assert pq.ParquetFile(exported / DATA_PATH.format(chunk_index=0, file_index=0)).num_row_groups == len(order)

    episodes = pd.read_parquet(exported / EPISODES_PATH.format(chunk_index=0, file_index=0))
    assert episodes["episode_index"].tolist() == list(range(len(order)))
    assert episodes["length"].tolist() == [r.n_frames for r in order]
    ends = np.cumsum([r.n_frames for r in order])
    assert episodes["dataset_to_index"].tolist() == ends.tolist()
    assert episodes["dataset_from_index"].tolist() == [0, *ends[:-1].tolist()]
    assert [list(t) for t in episodes["tasks"]] == [[r.instruction] for r in order]

    tasks = pd.read_parquet(exported / TASKS_FILE)  # the task string is the index, its row its task_index
    assert tasks["task_index"].tolist() == list(range(len(tasks)))
    frame_tasks = tasks.index[data.column("task_index").to_numpy()]
    assert list(frame_tasks) == [r.instruction for r in order for _ in range(r.n_frames)]

    export = LeRobotExport.model_validate_json((exported / EXPORT_FILE).read_text())
    assert export.data.version == store.version and export.action_offset == 1
    assert [(e.store_episode, e.split) for e in export.episodes] == [(r.episode, r.split) for r in order]


def test_frames_actions_and_timestamps_are_the_stores(exported: Path, learn_store: Path) -> None:
    store = open_store(learn_store)
    data = pq.read_table(exported / DATA_PATH.format(chunk_index=0, file_index=0)).to_pydict()
    row = 0
    for i, record in enumerate(episodes_in_export_order(store)[::9]):  # every 9th episode: enough, and quick
        row = data["episode_index"].index(i * 9)
        a, b = store.episode_range(record.episode)
        frames, actions = store.camera("rgb")[a:b], store.action[a:b]
        for t in range(b - a):
            png = data[CAMERA_PREFIX + "rgb"][row + t]
            assert png["path"] == f"frame-{t:06d}.png"
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png["bytes"]))), frames[t])
            # LeRobot's action at frame t: the command sent after seeing it, the store's row t+1; none after the last
            want = actions[t + 1] if t + 1 < b - a else np.zeros(2, np.float32)
            np.testing.assert_array_equal(data["action"][row + t], want)
            assert data["frame_index"][row + t] == t and data["timestamp"][row + t] == np.float32(t / FPS)


def test_stats_are_the_train_splits(exported: Path, learn_store: Path) -> None:
    store = open_store(learn_store)
    stats = json.loads((exported / STATS_FILE).read_text())
    assert set(stats) == {"action", CAMERA_PREFIX + "rgb", *INDEX_FEATURES}
    order = episodes_in_export_order(store)
    shifted = [np.concatenate([store.action[slice(*store.episode_range(r.episode))][1:], np.zeros((1, 2), np.float32)])
               for r in order if r.split == "train"]
    train = np.concatenate(shifted).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["q50"], np.quantile(train, 0.5, axis=0, method="inverted_cdf"))
    assert stats["action"]["count"] == [len(train)]
    np.testing.assert_allclose(stats["action"]["max"], [1.15, 1.15], rtol=1e-6)  # float32 1.15
    pixels = np.concatenate([store.camera("rgb")[slice(*store.episode_range(r.episode))]
                             for r in order if r.split == "train"]).reshape(-1, 3) / 255.0
    image = stats[CAMERA_PREFIX + "rgb"]
    np.testing.assert_allclose(np.ravel(image["mean"]), pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(np.ravel(image["std"]), pixels.std(0), rtol=1e-6)
    assert np.shape(image["q99"]) == (3, 1, 1) and image["count"] == [len(train)]


def test_video_frames_sit_where_lerobots_reader_looks_them_up(learn_store: Path, tmp_path: Path) -> None:
    pytest.importorskip("av")
    from vla_data.lerobot.video import read_frames

    out = tmp_path / "video"
    code, text = run("export-lerobot", str(learn_store), "-o", str(out), "--fps", str(FPS), "--video")
    assert code == 0, text
    info = LeRobotInfo.model_validate_json((out / INFO_FILE).read_text())
    camera = CAMERA_PREFIX + "rgb"
    assert info.video_path == VIDEO_PATH and info.features[camera].dtype == "video"
    assert info.features[camera].info["video.codec"] == "av1"
    assert camera not in pq.read_schema(out / DATA_PATH.format(chunk_index=0, file_index=0)).names
    episodes = pd.read_parquet(out / EPISODES_PATH.format(chunk_index=0, file_index=0))
    store = open_store(learn_store)
    order = episodes_in_export_order(store)
    errors = []
    for i in (0, len(order) // 2, len(order) - 1):
        row = episodes.iloc[i]
        start = row[f"videos/{camera}/from_timestamp"]
        assert start == episodes["length"][:i].sum() / FPS  # frame i of the file is at i / fps
        path = out / VIDEO_PATH.format(video_key=camera, chunk_index=row[f"videos/{camera}/chunk_index"],
                                       file_index=row[f"videos/{camera}/file_index"])
        frames, stamps = read_frames(path, start, int(row["length"]), FPS)
        np.testing.assert_allclose(stamps, start + np.arange(row["length"]) / FPS, atol=1e-4)  # LeRobot's tolerance
        want = store.camera("rgb")[slice(*store.episode_range(order[i].episode))]
        errors.append(np.abs(frames.astype(int) - want).mean())
    assert max(errors) < 6, errors  # AV1 at crf 30: close, not exact (exact: PNG images)


def test_careless_uses_are_refused_or_repaired(exported: Path, learn_store: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, text = run("export-lerobot", str(learn_store), "-o", str(taken), "--fps", "5")
    assert code == 1 and "exists already and is neither empty nor one `export-lerobot` wrote" in text, text
    assert (taken / "notes.txt").read_text() == "mine"
    code, text = run("export-lerobot", str(learn_store), "-o", str(tmp_path / "x"))
    assert code == 1 and "carry no clock" in text and "pass --fps N" in text, text
    code, text = run("export-lerobot", str(tmp_path / "nothing.zarr"), "-o", str(tmp_path / "x"), "--fps", "5")
    assert code == 1 and "Traceback" not in text, text
    assert not (tmp_path / "x").exists()
    # a folder it wrote is replaced whole; an empty one is taken; a dead export's temporary folder is removed
    again = tmp_path / "again"
    code, _ = run("export-lerobot", str(learn_store), "-o", str(again), "--fps", "5")
    (again / "stale.txt").write_text("from before")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".again.export-lerobot-{dead.stdout.strip()}.tmp").mkdir()
    code, text = run("export-lerobot", f"{learn_store}@{open_store(learn_store).version}", "-o", str(again),
                     "--fps", "10")
    assert code == 0 and "a `export-lerobot` killed half-way left it" in text, text
    assert not (again / "stale.txt").exists() and LeRobotInfo.model_validate_json((again / INFO_FILE).read_text()).fps == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "taken"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("export-lerobot", str(learn_store), "-o", str(empty), "--fps", "5")[0] == 0
    assert (empty / INFO_FILE).is_file()


def test_a_bag_store_gives_its_own_frame_rate(tmp_path: Path) -> None:
    raw, store = tmp_path / "bags", tmp_path / "ds.zarr"
    code, text = run("make-synthetic", str(raw), "--episodes", "2", "--image-size", f"{SMALL['height']}x{SMALL['width']}",
                     "--format", "rosbag2", "--seed", "4")
    assert code == 0, text
    assert run("build-splits", str(raw), "-o", str(store), "--image-size", "16")[0] == 0
    code, text = run("export-lerobot", str(store), "-o", str(tmp_path / "out"))
    assert code == 0 and "frames per second, from the episodes' stamps" in text, text
    records = open_store(store).records()
    rates = [(r.n_frames - 1) / ((r.stop_ns - r.start_ns) / 1e9) for r in records]
    assert LeRobotInfo.model_validate_json((tmp_path / "out" / INFO_FILE).read_text()).fps == round(np.median(rates))
