"""Two cameras all the way through: validate, build-splits, inspect-sample, train, eval and predict; and every
camera mismatch refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import segment_dir
from conftest import run_cli as run
from schemas import ColorOrder, RecorderSettings
from schemas.synthetic import SyntheticConfig
from vla_data.samples.dataset import WindowDataset
from vla_data.common.resize import resize_frames
from vla_data.store.reader import open_store
from vla_data.synthetic.episodes import FRONT, SIDE, camera_settings, side_view
from vla_model.policy import VLAPolicy
from vla_model.runtime import Policy

CAMERAS = ["--camera", "front=images", "--camera", "side=observations/side_images:rgb"]
TRAIN = ["--model", "tiny-random", "--max-steps", "2", "--window", "2", "--chunk", "2", "--batch-size", "4",
         "--hidden", "16", "--lora-r", "2", "--val-every", "2", "--save-every", "2"]


@pytest.fixture(scope="module")
def two_camera_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw2")
    code, text = run("make-synthetic", str(out), "--episodes", "6", "--image-size", "24x40", "--seed", "2",
                     "--cameras", "2")
    assert code == 0 and "--camera front=images:bgr --camera side=observations/side_images:rgb" in text, text
    return out


@pytest.fixture(scope="module")
def two_camera_store(two_camera_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store2") / "two.zarr"
    code, text = run("build-splits", str(two_camera_raw), "-o", str(store), "--image-size", "56", *CAMERAS)
    assert code == 0, text
    assert "front <- `images` (bgr), side <- `observations/side_images` (rgb)" in text
    return store


@pytest.fixture(scope="module")
def two_camera_run(two_camera_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run2") / "run"
    code, text = run("train", str(two_camera_store), "-o", str(run_dir), *TRAIN)
    assert code == 0, text
    return run_dir


def test_synthetic_side_camera_is_the_same_scene_shifted_and_rgb(two_camera_raw: Path) -> None:
    path = sorted(two_camera_raw.glob("*.h5"))[0]
    with h5py.File(path) as f:
        front, side = f[FRONT.key][()], f[SIDE.key][()]
    assert front.shape == side.shape
    np.testing.assert_array_equal(side, side_view(front[..., ::-1]))  # front is BGR, side RGB


def test_validate_checks_every_camera(two_camera_raw: Path, tmp_path: Path) -> None:
    code, text = run("validate", str(two_camera_raw), *CAMERAS)
    assert code == 0 and "cameras front <- `images` (bgr), side <- `observations/side_images` (rgb)" in text, text
    # a side camera with fewer frames than the actions, and one missing: each named
    short, missing = tmp_path / "a_1box_hori_left_core_far.h5", tmp_path / "b_1box_hori_left_core_far.h5"
    source = sorted(two_camera_raw.glob("*.h5"))[0]
    for p in (short, missing):
        shutil.copy(source, p)
    with h5py.File(short, "r+") as f:
        side = f[SIDE.key][()]
        del f[SIDE.key]
        f[SIDE.key] = side[:-1]
    with h5py.File(missing, "r+") as f:
        del f[SIDE.key]
    code, text = run("validate", str(short), str(missing), *CAMERAS, "--json", "-")
    assert code == 1
    findings = {Path(r["path"]).name: r["findings"] for r in json.loads(text)["files"]}
    (length,) = [f for f in findings[short.name] if f["severity"] == "error"]
    assert length["code"] == "length_mismatch" and length["message"].startswith("camera side:")
    assert length["key"] == SIDE.key
    (absent,) = [f for f in findings[missing.name] if f["severity"] == "error"]
    assert absent["code"] == "dataset_missing" and "camera side" in absent["message"]
    assert any(setting.startswith("cameras[side].") for fix in absent["fixes"] for setting in fix["settings"])


def test_the_store_holds_each_camera_resized_once_in_its_colour_order(two_camera_raw: Path,
                                                                      two_camera_store: Path) -> None:
    opened = open_store(two_camera_store)
    m = opened.manifest
    assert m.camera_names == ["front", "side"]
    assert [(f.source, f.color_order) for f in m.cameras] == [(FRONT.key, ColorOrder.bgr), (SIDE.key, ColorOrder.rgb)]
    ends = opened.episode_ends
    for row in opened.episodes.itertuples():
        start, stop = (int(ends[row.episode - 1]) if row.episode else 0), int(ends[row.episode])
        with h5py.File(row.source_path) as f:
            front = resize_frames(f[FRONT.key][()], m.preprocessing, ColorOrder.bgr)
            side = resize_frames(f[SIDE.key][()], m.preprocessing, ColorOrder.rgb)
        np.testing.assert_array_equal(opened.camera("front")[start:stop], front)
        np.testing.assert_array_equal(opened.camera("side")[start:stop], side)
    # the side camera is the front one shifted: stored, the two are RGB alike (not a channel swap apart)
    a, b = opened.camera("front")[0].astype(int), opened.camera("side")[0].astype(int)
    assert abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() < 12


def test_samples_give_one_array_per_camera_and_one_frame_mask(two_camera_store: Path) -> None:
    ds = WindowDataset(two_camera_store, "train", augment="mirror")
    s, mirrored = ds[0], ds[ds.n_anchors]
    assert list(s["rgb"]) == ["front", "side"] and s["frame_mask"].shape == (8,)
    assert all(tuple(v.shape) == (8, 3, 56, 56) and v.dtype == torch.uint8 for v in s["rgb"].values())
    assert not torch.equal(s["rgb"]["front"], s["rgb"]["side"])
    first = ds[int(ds.mirrored_anchors[0])]
    for camera in ("front", "side"):  # the mirrored world, seen by every camera
        assert torch.equal(mirrored["rgb"][camera], first["rgb"][camera].flip(-1))


def test_one_image_span_per_camera_in_the_prompt() -> None:
    from vla_model.backbone import build_tiny_random
    from schemas.train import ModelConfig

    backbone = build_tiny_random()
    one = VLAPolicy(backbone, ModelConfig(hidden=16), 2, 2)
    two = VLAPolicy(build_tiny_random(), ModelConfig(hidden=16), 2, 2, cameras=["front", "side"])
    ids1, _, slots1, query1 = one.text_inputs(["go left"])
    ids2, _, slots2, query2 = two.text_inputs(["go left"])
    q = backbone.image_tokens
    assert int(slots1.sum()) == q and int(slots2.sum()) == 2 * q
    assert int(query2[0] - query1[0]) == q + 2  # one more <image> Q slots </image>
    start, end = two._image_start, two._image_end
    assert ids2[0].tolist().count(start) == 2 and ids2[0].tolist().count(end) == 2
    frames = torch.randint(0, 256, (3, 2, 3, 56, 56), dtype=torch.uint8)
    with torch.no_grad():
        both = two.frame_features(frames, ["go left"] * 3)
        swapped = two.frame_features(frames.flip(1), ["go left"] * 3)
    assert both.shape == (3, 64) and not torch.allclose(both, swapped)  # the order of the cameras matters
    with pytest.raises(ValueError, match="cameras front, side"):
        two.frame_features(frames[:, :1], ["go left"] * 3)
    with pytest.raises(ValueError, match="no frames of camera.* side"):
        two({"front": frames[None, :, 0]}, ["go left"])


def test_a_camera_missing_from_the_store_is_named(two_camera_store: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(two_camera_store, damaged)
    shutil.rmtree(segment_dir(damaged) / "data" / "side")
    for command in (["info", str(damaged)], ["inspect-sample", str(damaged)]):
        code, text = run(*command)
        assert code == 1 and "no array for: side (" in text and "data/side)" in text and "Traceback" not in text, text


def test_inspect_sample_and_info_show_every_camera(two_camera_store: Path, tmp_path: Path) -> None:
    code, text = run("inspect-sample", str(two_camera_store), "--index", "2", "--json")
    assert code == 0, text
    assert json.loads(text)["cameras"] == {"front": [8, 3, 56, 56], "side": [8, 3, 56, 56]}
    code, text = run("inspect-sample", str(two_camera_store), "--index", "2", "--out", str(tmp_path / "s.png"))
    assert code == 0 and (tmp_path / "s.png").stat().st_size > 0
    code, text = run("info", str(two_camera_store), "--plot", str(tmp_path / "i.png"))
    assert code == 0 and "cameras: front <- `images` (bgr), side <- `observations/side_images` (rgb)" in text
    from pipelines.store_plot import sample_frames, store_figure

    opened = open_store(two_camera_store)
    (episode, index), *_ = sample_frames(opened, 8)
    shown = [ax for ax in store_figure(opened).axes if ax.images][0]  # the first sample frame: both cameras
    np.testing.assert_array_equal(np.asarray(shown.images[0].get_array()),
                                  np.concatenate([opened.camera("front")[index], opened.camera("side")[index]], 1))
    assert "[front | side]" in shown.get_title()


def test_train_eval_and_predict_on_two_cameras(two_camera_raw: Path, two_camera_store: Path, two_camera_run: Path,
                                               tmp_path: Path) -> None:
    policy = Policy.from_checkpoint(two_camera_run, "cpu")
    assert policy.camera_names == ["front", "side"] and policy.meta.format_version == 3
    code, text = run("eval", str(two_camera_run), str(two_camera_store), "--split", "val", "-o", str(tmp_path / "e"))
    assert code == 0 and "camera(s) front, side" in text, text
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["cameras"] == ["front", "side"]
    episode = sorted(two_camera_raw.glob("*.h5"))[0]
    code, text = run("predict", str(two_camera_run), str(episode), "--json")  # the checkpoint's cameras by default
    assert code == 0, text
    report = json.loads(text)
    assert report["color_orders"] == {"front": "bgr", "side": "rgb"}

    # the runner steps on a dict of frames by camera, as predict does; the same chunks
    with h5py.File(episode) as f:
        front, side = f[FRONT.key][()], f[SIDE.key][()]
    runner = policy.runner()
    runner.reset(report["instruction"])
    for t, step in enumerate(report["steps"][:3]):
        np.testing.assert_allclose(runner.step({"front": front[t], "side": side[t]}), step["predicted"], atol=1e-5)
    with pytest.raises(ValueError, match="no frames of camera.* side"):
        runner.step({"front": front[0]})
    with pytest.raises(ValueError, match="give the frames as a dict by camera name"):
        runner.step(front[0])
    # the same episode with the side camera said to be BGR predicts otherwise (the order is the camera's)
    code, text = run("predict", str(two_camera_run), str(episode), "--json", *CAMERAS[:2],
                     "--camera", "side=observations/side_images:bgr")
    assert code == 0 and json.loads(text)["color_orders"]["side"] == "bgr"
    assert json.loads(text)["steps"] != report["steps"]


def test_a_checkpoint_refuses_a_store_or_episode_that_lacks_one_of_its_cameras(
        two_camera_raw: Path, two_camera_run: Path, tmp_path: Path) -> None:
    one = tmp_path / "front.zarr"
    code, text = run("build-splits", str(two_camera_raw), "-o", str(one), "--image-size", "56",
                     "--camera", "front=images")
    assert code == 0, text
    code, text = run("eval", str(two_camera_run), str(one), "-o", str(tmp_path / "e"))
    assert code == 1 and "camera(s) side: the checkpoint reads front, side, the store holds front" in text, text
    episode = sorted(two_camera_raw.glob("*.h5"))[0]
    code, text = run("predict", str(two_camera_run), str(episode), "--camera", "front=images")
    assert code == 1 and "lack side" in text, text
    assert not (tmp_path / "e").exists()


def test_an_incremental_build_keeps_the_stores_cameras(two_camera_raw: Path, two_camera_store: Path,
                                                       tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(two_camera_store, copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    code, text = run("build-splits", str(two_camera_raw), "-o", str(copy), "--image-size", "56")
    assert code == 1 and "holds camera(s) front <- `images` (bgr); side <- `observations/side_images` (rgb)" in text
    assert "--overwrite" in text
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before  # nothing written
    code, text = run("build-splits", str(two_camera_raw), "-o", str(copy), "--image-size", "56", *CAMERAS)
    assert code == 0 and "nothing new" in text, text
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if ".lock" not in p.name) == before  # nothing written


def test_camera_flags_are_checked() -> None:
    code, text = run("validate", ".", "--camera", "front")
    assert code == 2 and "NAME=KEY[:ORDER]" in text
    code, text = run("validate", ".", "--camera", "a=images", "--camera", "a=other")
    assert code == 2 and "given more than once" in text
    code, text = run("validate", ".", "--camera", "a=images", "--frames-key", "images")
    assert code == 2 and "--frames-key names the one camera" in text
    assert camera_settings(2) == RecorderSettings(cameras=(FRONT, SIDE))


def test_one_camera_settings_files_of_before_read_as_the_one_camera() -> None:
    settings = RecorderSettings.model_validate({"frames_key": "observations/images", "color_order": "rgb"})
    assert [(c.name, c.key, c.color_order) for c in settings.cameras] == [("rgb", "observations/images", "rgb")]
    with pytest.raises(ValueError, match="not both"):
        RecorderSettings.model_validate({"frames_key": "x", "cameras": [{"key": "y"}]})
    assert SyntheticConfig(cameras=2).cameras == 2
