"""build-splits and info: the store matches its sources, splits and stats are right, builds are safe."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import zarr

from schemas import ColorOrder
from schemas.store import BuildLog, Preprocessing, Split
from conftest import Start, committed, segment_dir, version_dir
from conftest import run_cli as run
from vla_data.samples.dataset import WindowDataset
from vla_data.store.location import StoreLocation
from vla_data.common.resize import resize_frames
from vla_data.store.shards import EpisodeSource, plan_shards
from vla_data.store.layout import MANIFEST
from vla_data.store.reader import FRAMES_PER_SHARD, StoreError, open_store, verify


@pytest.fixture(scope="module")
def store(clean_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store") / "dataset.zarr"
    code, output = run("build-splits", str(clean_dir), "-o", str(out), "--image-size", "16", "--val-ratio", "0.25")
    assert code == 0, output
    return out


def test_store_matches_sources_frame_for_frame(store: Path) -> None:
    version = version_dir(store)  # plain zarr and pandas, no vla-data: the version's table, the segment's frames
    group = zarr.open_group(segment_dir(store), mode="r")
    table = pd.read_csv(version / "episodes.csv")
    assert table["segment_start"].tolist() == [0, *table["n_frames"].cumsum()[:-1]]
    ends = group["meta/episode_ends"][:]
    assert ends[-1] == group["data/rgb"].shape[0] == group["data/action"].shape[0] == table["n_frames"].sum()
    pre = open_store(store).manifest.preprocessing
    assert pre == Preprocessing(image_size=16)
    start = 0
    for row, end in zip(table.itertuples(), ends, strict=True):
        with h5py.File(row.source_path, "r") as f:
            want_rgb = resize_frames(f["images"][()], pre, ColorOrder.bgr)
            want_action = f["actions"][()][:, [0, 1]]  # auto drops the always-zero angular_z
        assert np.array_equal(group["data/rgb"][start:end], want_rgb)
        assert np.array_equal(group["data/action"][start:end], want_action)
        start = end


def test_store_holds_rgb_from_bgr_sources(store: Path) -> None:
    rgb = zarr.open_group(segment_dir(store), mode="r")["data/rgb"][:]
    red = (rgb[..., 0] > 150) & (rgb[..., 2] < 80)  # the bottle is red in RGB
    assert red.any()


def test_splits_disjoint_complete_and_stats_on_train_only(store: Path) -> None:
    opened = open_store(store)
    table, m = opened.episodes, opened.manifest
    assert set(table["split"]) <= {s.value for s in Split}
    assert len(table) == m.n_episodes == table["content_hash"].nunique()
    assert {s.value: n for s, n in m.split_episodes.items() if n} == table["split"].value_counts().to_dict()
    ends = opened.episode_ends
    starts = ends - table["n_frames"].to_numpy()
    train = [(a, b) for a, b, s in zip(starts, ends, table["split"], strict=True) if s == "train"]
    actions = np.concatenate([opened.action[a:b] for a, b in train]).astype(np.float64)
    frames = np.concatenate([opened.camera("rgb")[a:b] for a, b in train]).reshape(-1, 3).astype(np.float64)
    stats = m.stats
    assert [c.count for c in stats.action] == [len(actions)] * 2
    assert np.allclose([c.mean for c in stats.action], actions.mean(axis=0))
    assert np.allclose([c.q99 for c in stats.action], np.quantile(actions, 0.99, axis=0))
    assert np.allclose(stats.image_mean, frames.mean(axis=0) / 255)
    assert np.allclose(stats.image_std, frames.std(axis=0) / 255)


def test_adding_episodes_keeps_existing_ones(clean_dir: Path, tmp_path: Path) -> None:
    first_half, everything = tmp_path / "a", tmp_path / "all"
    everything.mkdir()
    for p in sorted(clean_dir.glob("*.h5")):
        shutil.copy(p, everything)
    shutil.copy(clean_dir / "dataset_index.csv", everything)
    first_half.mkdir()
    for p in sorted(everything.glob("*.h5"))[:5]:
        shutil.copy(p, first_half)
    shutil.copy(clean_dir / "dataset_index.csv", first_half)
    out = tmp_path / "ds.zarr"
    assert run("build-splits", str(first_half), "-o", str(out), "--image-size", "16")[0] == 0
    before = open_store(out)
    old = dict(zip(before.episodes["content_hash"], before.episodes["split"], strict=True))
    old_rgb = before.camera("rgb")[:]
    code, output = run("build-splits", str(everything), "-o", str(out), "--image-size", "16")
    assert code == 0, output
    after = open_store(out)
    assert len(after.episodes) == 8 and len(before.episodes) == 5
    assert {h: s for h, s in zip(after.episodes["content_hash"], after.episodes["split"], strict=True) if h in old} == old
    assert np.array_equal(after.camera("rgb")[: len(old_rgb)], old_rgb)
    runs = BuildLog.model_validate_json((version_dir(out) / "build_log.json").read_text()).runs
    assert [(r.kept, len(r.added)) for r in runs] == [(0, 5), (5, 3)]
    # the superseded version stays, readable as it was: STORE@VERSION gives the first build's episodes and frames
    first = committed(after)[0]
    assert sorted(p.name for p in (out / "versions").iterdir()) == committed(after) == [first, version_dir(out).name]
    again = open_store(f"{out}@{first}")
    assert again.version == first and again.episodes.equals(before.episodes)
    assert np.array_equal(again.camera("rgb")[:], old_rgb)


def test_other_preprocessing_is_refused_without_overwrite(store: Path, clean_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    code, out = run("build-splits", str(clean_dir), "-o", str(copy), "--image-size", "24")
    assert code == 1 and "--overwrite" in out
    assert open_store(copy).manifest.preprocessing.image_size == 16
    assert run("build-splits", str(clean_dir), "-o", str(copy), "--image-size", "24", "--overwrite")[0] == 0
    assert open_store(copy).manifest.preprocessing.image_size == 24


def test_flipped_byte_in_a_shard_is_named_by_verify(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    assert run("info", str(copy), "--verify")[0] == 0
    shard = sorted((segment_dir(copy) / "data" / "rgb" / "c").rglob("*"))
    shard = [p for p in shard if p.is_file()][0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    code, out = run("info", str(copy), "--verify")
    assert code == 1
    assert "data/rgb/c/0/0/0/0: checksum mismatch (array data/rgb, segment frames 0..63, episodes 0, " in out


def test_invalid_source_stops_the_build_and_writes_nothing(defect_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds.zarr"
    code, output = run("build-splits", str(defect_dir), "-o", str(out), "--image-size", "16")
    assert code == 1 and "build refused, nothing written" in output
    assert not out.exists() and not list(tmp_path.iterdir())
    code, output = run("build-splits", str(defect_dir), "-o", str(out), "--image-size", "16", "--skip-invalid")
    assert code == 0, output
    (entry,) = BuildLog.model_validate_json((version_dir(out) / "build_log.json").read_text()).runs
    assert len(entry.skipped) == 13 and any("not_hdf5" in s.reason for s in entry.skipped)
    assert [Path(d.source_path).name.split("_defect_")[1] for d in entry.duplicates] == ["duplicate_episode.h5"]
    assert all(Path(d.same_as).is_file() for d in entry.duplicates)


def test_incomplete_store_is_refused(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    (copy / "current.json").unlink()  # claimed by vla-data's marker, no build committed: as a killed first build
    with pytest.raises(StoreError, match="incomplete store"):
        open_store(copy)
    code, out = run("info", str(copy))
    assert code == 1 and "incomplete store" in out
    shutil.copy(store / "current.json", copy / "current.json")
    (version_dir(copy) / MANIFEST).unlink()  # the current version's manifest deleted by hand
    code, out = run("info", str(copy))
    assert code == 1 and "has no manifest.json" in out and "Traceback" not in out


@pytest.mark.parametrize("delay", [0.5, 1.5, 2.5, 3.5])
def test_sigkill_leaves_the_previous_store_or_the_new_one(store: Path, clean_dir: Path, tmp_path: Path,
                                                         delay: float, start: Start) -> None:
    """A build killed at any moment leaves the previous complete store or the new complete one, and the next
    build removes what the killed one left."""
    out = tmp_path / "ds.zarr"
    shutil.copytree(store, out)
    previous = open_store(out).manifest
    build = start(
        [sys.executable, "-m", "pipelines.cli", "build-splits", str(clean_dir), "-o", str(out),
         "--image-size", "24", "--overwrite"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    build.send_signal(signal.SIGKILL)
    build.wait()
    now = open_store(out).manifest
    assert now == previous or now.preprocessing.image_size == 24
    assert not verify(open_store(out))
    assert run("build-splits", str(clean_dir), "-o", str(out), "--image-size", "24", "--overwrite")[0] == 0
    assert not verify(open_store(out))
    # no leftover: every version there is one the history committed (the killed build's is gone)
    assert {p.name for p in (out / "versions").iterdir()} == set(committed(open_store(out)))
    referenced = {s for v in committed(open_store(out)) for s in open_store(f"{out}@{v}").manifest.segments}
    assert {p.name for p in (out / "segments").iterdir()} == referenced  # and no segment of the killed build
    assert sorted(p.name for p in out.iterdir()) == ["current.json", "segments", "versions", "vla-data-store.json"]
    assert [p.name for p in tmp_path.glob(".ds.zarr.*")] == [".ds.zarr.lock"]


def test_workers_write_the_same_store(store: Path, clean_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "parallel.zarr"
    code, output = run("build-splits", str(clean_dir), "-o", str(out), "--image-size", "16", "--val-ratio", "0.25",
                       "--workers", "2")
    assert code == 0, output
    one, two = open_store(store), open_store(out)
    assert two.manifest.n_frames > FRAMES_PER_SHARD  # several shards, so both workers wrote some
    assert np.array_equal(one.camera("rgb")[:], two.camera("rgb")[:]) and np.array_equal(one.action[:], two.action[:])
    assert one.manifest.stats == two.manifest.stats
    (a,), (b,) = one.manifest.segments, two.manifest.segments
    data = {k: v for k, v in one.segment(a).checksums.items() if k.startswith(("data/", "meta/"))}
    assert len(data) > 3 and data.items() <= two.segment(b).checksums.items()  # shard files byte for byte


def test_shard_plan_gives_each_shard_to_one_task_and_tiles_every_episode() -> None:
    lengths = [3, 70, 1, 64, 30]
    sources = [EpisodeSource(e, n, Path(f"e{e}.h5"), "images") for e, n in enumerate(lengths)]
    tasks = plan_shards(sources, StoreLocation(path=Path("v")), "data/rgb", 64, Preprocessing(image_size=8))
    assert [(t.start, t.stop) for t in tasks] == [(0, 64), (64, 128), (128, 168)]
    for t in tasks:  # the pieces fill each shard exactly, in order
        assert [p.start for p in t.pieces] == list(np.cumsum([t.start] + [p.n for p in t.pieces[:-1]]))
        assert sum(p.n for p in t.pieces) == t.stop - t.start
    for e, n in enumerate(lengths):  # every frame of every episode lands once, in order
        pieces = [p for t in tasks for p in t.pieces if p.source.episode == e]
        assert [p.source_start for p in pieces] == list(np.cumsum([0] + [p.n for p in pieces[:-1]]))
        assert sum(p.n for p in pieces) == n


def _split_csv(path: Path, rows: dict[str, str]) -> Path:
    pd.DataFrame({"episode": list(rows), "split": list(rows.values())}).to_csv(path, index=False)
    return path


def test_split_file_is_honoured(clean_dir: Path, tmp_path: Path) -> None:
    names = sorted(p.name for p in clean_dir.glob("*.h5"))
    wanted = {n: ("val" if i in (1, 6) else "test" if i == 3 else "train") for i, n in enumerate(names)}
    csv = _split_csv(tmp_path / "splits.csv", wanted | {"gone_episode.h5": "train"})
    out = tmp_path / "ds.zarr"
    code, output = run("build-splits", str(clean_dir), "-o", str(out), "--image-size", "16", "--split-file", str(csv))
    assert code == 0, output
    table = open_store(out).episodes
    assert {Path(p).name: s for p, s in zip(table["source_path"], table["split"], strict=True)} == wanted
    (entry,) = BuildLog.model_validate_json((version_dir(out) / "build_log.json").read_text()).runs
    assert entry.unmatched_split_rows == ["gone_episode.h5"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"first": "train"}, "not in the split file"),
        ({"first": "validation"}, "one of train, val, test"),
        ({"first": "train", "rest": "train"}, "one train and one val"),
    ],
)
def test_bad_split_file_is_refused(clean_dir: Path, tmp_path: Path, rows: dict[str, str], message: str) -> None:
    names = sorted(p.name for p in clean_dir.glob("*.h5"))
    given = {names[0]: rows["first"]} | ({n: rows["rest"] for n in names[1:]} if "rest" in rows else {})
    csv = _split_csv(tmp_path / "splits.csv", given)
    out = tmp_path / "ds.zarr"
    code, output = run("build-splits", str(clean_dir), "-o", str(out), "--image-size", "16", "--split-file", str(csv))
    assert code == 1 and message in output and "Traceback" not in output
    assert not out.exists()


def test_split_file_cannot_move_a_stored_episode(store: Path, clean_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    table = open_store(copy).episodes
    rows = {Path(p).name: s for p, s in zip(table["source_path"], table["split"], strict=True)}
    csv = _split_csv(tmp_path / "same.csv", rows)
    args = ["build-splits", str(clean_dir), "-o", str(copy), "--image-size", "16", "--val-ratio", "0.25"]
    code, output = run(*args, "--split-file", str(csv))
    assert code == 1 and "assigns new episodes by" in output  # a split file is another rule than ratios
    first = next(iter(rows))
    moved = _split_csv(tmp_path / "moved.csv", rows | {first: "test" if rows[first] != "test" else "train"})
    code, output = run(*args, "--split-file", str(moved), "--overwrite")
    assert code == 0, output
    table = open_store(copy).episodes
    assert {Path(p).name: s for p, s in zip(table["source_path"], table["split"], strict=True)}[first] != rows[first]


def test_other_split_options_are_refused_without_overwrite(store: Path, clean_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    code, output = run("build-splits", str(clean_dir), "-o", str(copy), "--image-size", "16", "--val-ratio", "0.25",
                       "--seed", "7")
    assert code == 1 and "--overwrite" in output
    assert open_store(copy).manifest.splits.seed == 0


def test_info_plot_writes_a_png_and_refuses_other_suffixes(store: Path, tmp_path: Path) -> None:
    code, output = run("info", str(store), "--plot", str(tmp_path / "store.png"))
    assert code == 0 and (tmp_path / "store.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, output = run("info", str(store), "--plot", str(tmp_path / "store.jpg"))
    assert code == 2 and "ending in .png" in output and not (tmp_path / "store.jpg").exists()


def test_the_manifest_lists_every_feature_and_a_format_1_store_still_reads(store: Path, tmp_path: Path) -> None:
    m = open_store(store).manifest
    assert m.format_version == 3
    assert [(f.name, f.kind.value, f.dtype, f.shape, f.source) for f in m.features] == [
        ("rgb", "camera", "uint8", [16, 16, 3], "images"), ("action", "action", "float32", [2], "actions[0,1]")]
    code, out = run("info", str(store))
    assert code == 0 and "rgb (camera, uint8 16x16x3) <- images" in out
    old = Path(shutil.copytree(store, tmp_path / "format1.zarr"))  # as vla-data 0.1.0 wrote it: no features table
    raw = json.loads((version_dir(old) / MANIFEST).read_text())
    del raw["features"], raw["actions"]["dropped"]
    (version_dir(old) / MANIFEST).write_text(json.dumps(raw | {"format_version": 1}))
    assert open_store(old).manifest.features == m.features
    assert open_store(old).manifest.actions == m.actions  # angular_z dropped at the recorder's unused 0
    assert len(WindowDataset(old, "train", augment="mirror")) > len(WindowDataset(old, "train"))
    assert np.array_equal(open_store(old).camera("rgb")[:8], open_store(store).camera("rgb")[:8])
    (version_dir(old) / MANIFEST).write_text(json.dumps(raw | {"format_version": 4}))
    code, out = run("info", str(old))
    assert code == 1 and "store format 4" in out and "reads formats 1, 2, 3" in out and "Traceback" not in out
