"""LeRobotDataset v3.0 out and in. `vla-data export-lerobot`: the files are v3.0 as LeRobot's reader requires them
(checked here with pyarrow against the format; LeRobot's own reader reads them in benchmarks/lerobot.py, which
needs its own environment), and they hold the store's frames (exact as PNG, close as video), its actions at the
stated offset, its instructions, splits and train-only stats; careless uses are refused or repaired. A LeRobot
folder as a build-splits source: the export built again gives the same episodes, and its defects are findings."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import SMALL, run_cli as run
from schemas import FindingCode, RecorderSettings, ValidateOptions, ValidationReport
from schemas.lerobot import (
    CAMERA_PREFIX,
    DATA_PATH,
    EPISODES_PATH,
    EXPORT_FILE,
    INDEX_FEATURES,
    INFO_FILE,
    SPLITS_FILE,
    STATS_FILE,
    TASKS_FILE,
    VIDEO_PATH,
    LeRobotExport,
    LeRobotInfo,
)
from vla_data.sources.instructions import InstructionIndex
from vla_data.store.reader import open_store
from vla_data.validation.checks import check_source

FPS = 5
LEROBOT_CODES = {FindingCode.timestamps_off_rate}  # the findings only a LeRobot dataset can have, tested here
# build-splits' settings for the export of the learn store: the camera and action features, 2 action channels
IMPORT = ["--frames-key", "observation.images.rgb", "--color-order", "rgb", "--actions-key", "action",
          "--action-dim", "2"]
IMPORTED = RecorderSettings.model_validate({"cameras": [{"key": "observation.images.rgb", "color_order": "rgb"}],
                                            "actions_key": "action", "action_dim": 2})


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
    from vla_data.sources.lerobot import read_video

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
        frames, stamps = read_video(path, start, int(row["length"]), FPS)
        np.testing.assert_allclose(stamps, start + np.arange(row["length"]) / FPS, atol=1e-4)  # LeRobot's tolerance
        want = store.camera("rgb")[slice(*store.episode_range(order[i].episode))]
        errors.append(np.abs(frames.astype(int) - want).mean())
    assert max(errors) < 6, errors  # AV1 at crf 30: close, not exact (exact: PNG images)
    # built again: the same rows and instructions, the frames as close
    code, text = run("build-splits", str(out), "-o", str(tmp_path / "again.zarr"), "--image-size", "56", *IMPORT)
    assert code == 0, text
    differences = same_episodes(learn_store, tmp_path / "again.zarr", out)
    assert max(differences) < 6 and min(differences) > 0, differences
    # a video cut short (a copy stopped half-way): every episode's frames fail to decode, each one a finding
    video = out / VIDEO_PATH.format(video_key=camera, chunk_index=0, file_index=0)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    reports = check_source(out, IMPORTED, ValidateOptions(), InstructionIndex())
    assert len(reports) == len(order) and all(FindingCode.corrupt_file in {f.code for f in r.findings} for r in reports)


def test_short_episodes_share_one_video_stream(tmp_path: Path) -> None:
    """The encoder writes nothing for its first 25 or so frames: episodes shorter than that still go one after
    another into one file, each where its from_timestamp says."""
    pytest.importorskip("av")
    from vla_data.lerobot.video import CameraVideo
    from vla_data.sources.lerobot import read_video

    video = CameraVideo(tmp_path, "observation.images.rgb", FPS, 30)
    levels = [np.full((n, 32, 32, 3), 40 * (i + 1), np.uint8) for i, n in enumerate((3, 5, 2))]
    spans = [video.add(frames) for frames in levels]
    video.close()
    assert [s[2:] for s in spans] == [(0.0, 0.6), (0.6, 1.6), (1.6, 2.0)] and {s[:2] for s in spans} == {(0, 0)}
    path = tmp_path / VIDEO_PATH.format(video_key="observation.images.rgb", chunk_index=0, file_index=0)
    for (_, _, start, stop), frames in zip(spans, levels, strict=True):
        decoded, stamps = read_video(path, start, len(frames), FPS)
        np.testing.assert_allclose(stamps, start + np.arange(len(frames)) / FPS, atol=1e-4)
        assert np.abs(decoded.astype(int) - frames).max() <= 3  # flat grey: AV1 keeps it


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
    # 16x16 frames: below what the AV1 encoder takes (it would kill the process), refused before any work
    code, text = run("export-lerobot", str(store), "-o", str(tmp_path / "video"), "--video")
    assert code == 1 and "below the 32x32 the AV1 encoder takes" in text and not (tmp_path / "video").exists(), text


def same_episodes(store: Path, built: Path, folder: Path) -> list[float]:
    """Each exported episode's stored frames, rows and instruction against the store built from the export: rows
    and instructions equal; the mean absolute frame difference of each episode (0: the same frames)."""
    a, b = open_store(store), open_store(built)
    by_ref = {r.source_path: r for r in b.records()}
    export = LeRobotExport.model_validate_json((folder / EXPORT_FILE).read_text())
    original = {r.episode: r for r in a.records()}
    differences = []
    for e in export.episodes:
        x, y = original[e.store_episode], by_ref[f"{folder}#{e.episode_index}"]
        assert (y.instruction, y.scenario, y.source_kind.value, y.instruction_source.value) == (
            x.instruction, x.scenario, "lerobot", "task")
        assert y.start_ns == 0 and y.stop_ns == round(float(np.float32(x.n_frames - 1) / np.float32(FPS)) * 1e9)
        np.testing.assert_array_equal(b.action[slice(*b.episode_range(y.episode))],
                                      a.action[slice(*a.episode_range(x.episode))])
        frames = b.camera("rgb")[slice(*b.episode_range(y.episode))].astype(int)
        differences.append(float(np.abs(frames - a.camera("rgb")[slice(*a.episode_range(x.episode))]).mean()))
    assert len(by_ref) == len(export.episodes)
    return differences


def test_the_export_built_again_gives_the_same_episodes(exported: Path, learn_store: Path, tmp_path: Path) -> None:
    """recorder files -> store -> export -> build-splits -> store: the same frames (PNG: exact), rows (the first
    row zero velocity, as the recorder's; the offset undone) and instructions, each episode named DIR#k; with the
    export's split file, the same splits."""
    code, text = run("build-splits", str(exported), "-o", str(tmp_path / "again.zarr"), "--image-size", "56", *IMPORT,
                     "--split-file", str(exported / SPLITS_FILE))
    assert code == 0, text
    assert same_episodes(learn_store, tmp_path / "again.zarr", exported) == [0.0] * len(open_store(learn_store).records())
    splits = {r.content_hash: r.split for r in open_store(learn_store).records()}
    export = LeRobotExport.model_validate_json((exported / EXPORT_FILE).read_text())
    by_ref = {r.source_path: r.split for r in open_store(tmp_path / "again.zarr").records()}
    assert [by_ref[f"{exported}#{e.episode_index}"] for e in export.episodes] == [splits[e.content_hash]
                                                                                   for e in export.episodes]


def test_a_lerobot_datasets_defects_are_findings(exported: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(exported, tmp_path / "ds"))
    options, index = ValidateOptions(), InstructionIndex()

    def findings(settings: RecorderSettings = IMPORTED) -> dict[str, set[FindingCode]]:
        return {r.path: {f.code for f in r.findings} for r in check_source(folder, settings, options, index)}

    assert set().union(*findings().values()) <= {FindingCode.short_episode}  # the export itself is clean
    # the recorder's defaults name features a LeRobot dataset does not have: each is named, with its fix
    default = check_source(folder, RecorderSettings(), options, index)[0]
    missing = {f.key: f for f in default.findings if f.code == FindingCode.dataset_missing}
    assert set(missing) == {"images", "actions"}
    assert missing["images"].fixes[0].settings == {"camera.key": "observation.images.rgb", "camera.color_order": "rgb"}
    assert missing["actions"].fixes[0].settings == {"actions_key": "action"}
    # timestamps off frame_index / fps in episode 0, a PNG that does not decode in episode 1
    path = folder / DATA_PATH.format(chunk_index=0, file_index=0)
    table = pq.read_table(path).to_pydict()
    first = [i for i, e in enumerate(table["episode_index"]) if e == 0]
    table["timestamp"] = [t * 1.01 if i in first else t for i, t in enumerate(table["timestamp"])]
    broken = table["episode_index"].index(1)
    table[CAMERA_PREFIX + "rgb"][broken] = {"bytes": b"not a png", "path": "frame-000000.png"}
    pq.write_table(pa.table(table, schema=pq.read_schema(path)), path)
    found = findings()
    assert FindingCode.timestamps_off_rate in found[f"{folder}#0"] and FindingCode.corrupt_file in found[f"{folder}#1"]
    assert all(not (codes - {FindingCode.short_episode}) for ref, codes in found.items()
               if ref not in (f"{folder}#0", f"{folder}#1"))
    # one episode named: its report only; an episode the folder does not have: one error naming those it has
    (one,) = check_source(Path(f"{folder}#1"), IMPORTED, options, index)
    assert one.path == f"{folder}#1" and FindingCode.corrupt_file in {f.code for f in one.findings}
    (none,) = check_source(Path(f"{folder}#999"), IMPORTED, options, index)
    assert [f.code for f in none.findings] == [FindingCode.empty_episode] and f"{folder}#0" in none.findings[0].message
    # another format version: the folder gives no episode, and says why
    info = json.loads((folder / INFO_FILE).read_text())
    (folder / INFO_FILE).write_text(json.dumps(info | {"codebase_version": "v2.1"}))
    (only,) = check_source(folder, IMPORTED, options, index)
    assert only.path == str(folder) and [f.code for f in only.findings] == [FindingCode.unsupported_message]
    assert "convert_dataset_v21_to_v30" in only.findings[0].hint


def test_a_dataset_already_in_this_machines_caches_is_a_source_by_its_hub_name(exported: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """hf://datasets/ORG/NAME: LeRobot's own copy, else the hub cache's snapshot; nothing is downloaded."""
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "lerobot"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    shutil.copytree(exported, tmp_path / "lerobot" / "team" / "demo")
    repo = tmp_path / "hub" / "datasets--team--other"
    shutil.copytree(exported, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    for name, folder in (("demo", tmp_path / "lerobot" / "team" / "demo"), ("other", repo / "snapshots" / "0123abcd")):
        code, text = run("validate", f"hf://datasets/team/{name}", *IMPORT, "--json", str(tmp_path / f"{name}.json"))
        assert code == 0, text
        report = ValidationReport.model_validate_json((tmp_path / f"{name}.json").read_text())
        assert {r.path.rpartition("#")[0] for r in report.files} == {str(folder)} and len(report.files) == 64
    code, text = run("validate", "hf://datasets/team/absent", *IMPORT)
    assert code == 2 and "not on this machine" in text and "nothing is downloaded" in text, text
