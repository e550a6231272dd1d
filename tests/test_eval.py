"""vla-data eval / predict, the metrics, Policy.from_checkpoint and PolicyRunner."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import SMALL_MODEL, segment_dir, version_dir
from conftest import run_cli
from transformers import Kosmos2Model

from pipelines.cli import main
from pipelines.eval_results import EpisodeResult
from schemas.evaluation import EvalOptions, EvalReport, Horizon, Predictor, PredictReport
from schemas.sample import WindowSpec
from schemas.train import TrainConfig
from vla_data.samples.dataset import WindowDataset
from vla_data.synthetic.episodes import Episode, write_episode
from vla_model import Policy
from vla_model import checkpoint as ckpt
from vla_model.backbone import build_tiny_random, tiny_config
from vla_model.checkpoint import ADAPTER, HEADS, META
from vla_model.loading import load_policy
from vla_model.metrics import action_metrics, baseline_actions, compare
from vla_model.trainer import train

# The runner and the batch model do the same float32 arithmetic on the same frames, in other batch shapes.
RUNNER_ATOL = 1e-5  # physical units (actions here are up to about 1.2)


def predict_json(*args: str) -> PredictReport:
    """`vla-data predict ... --json`, read from stdout alone (a backbone loaded from a folder shows a progress bar)."""
    result = CliRunner().invoke(main, ["predict", *args, "--json"])
    assert result.exit_code == 0, result.output
    return PredictReport.model_validate_json(result.stdout)


# -- metrics against hand-computed values ---------------------------------------------------------------------
PRED = np.array([[[0.1, -0.2], [0.5, 0.0]], [[0.0, -0.3], [9.0, 9.0]]])  # (N=2, K=2, A=2); [1, 1] is masked
TRUE = np.array([[[0.0, -0.1], [0.2, 0.02]], [[0.04, -0.3], [0.0, 0.0]]])
MASK = np.array([[True, True], [True, False]])


def test_metrics_match_hand_computed_values_and_skip_masked_actions() -> None:
    # unmasked errors: (0.1, -0.1), (0.3, -0.02), (-0.04, 0.0)
    m = action_metrics(PRED, TRUE, MASK, tolerance=0.15, dead_band=0.05)
    assert m.count == 3
    np.testing.assert_allclose(m.mae, [0.44 / 3, 0.12 / 3])
    np.testing.assert_allclose(m.mse, [0.1016 / 3, 0.0104 / 3])
    np.testing.assert_allclose(m.rmse, np.sqrt([0.1016 / 3, 0.0104 / 3]))
    # signs with the dead band: pred x (+, +, 0) vs true x (0, +, 0); pred y (-, 0, -) vs true y (-, 0, -)
    np.testing.assert_allclose(m.direction_accuracy, [2 / 3, 1.0])
    assert m.success == pytest.approx(2 / 3)  # the second action misses by 0.3 on x
    assert action_metrics(PRED, TRUE, MASK, tolerance=0.5, dead_band=0.0).success == 1.0

    empty = action_metrics(PRED, TRUE, np.zeros_like(MASK), tolerance=0.1, dead_band=0.05)
    assert empty.count == 0 and empty.mae == [None, None] and empty.success is None
    with pytest.raises(ValueError, match="do not line up"):
        action_metrics(PRED, TRUE[:1], MASK, 0.1, 0.05)


# the train split: mean (0.1, 0.1), most common row (0, -0.3) (twice; -0.3 and -0.3000000001 are one value)
TRAIN = np.array([[0.0, -0.3], [0.0, -0.3000000001], [0.3, 0.9], [0.1, 0.1]])


def test_the_baselines_come_from_the_train_actions() -> None:
    baselines = baseline_actions(TRAIN)
    assert list(baselines) == [Predictor.train_mean, Predictor.most_common, Predictor.zero_velocity]
    np.testing.assert_allclose(baselines[Predictor.train_mean], [0.1, 0.1])
    np.testing.assert_allclose(baselines[Predictor.most_common], [0.0, -0.3])
    np.testing.assert_array_equal(baselines[Predictor.zero_velocity], [0.0, 0.0])
    # a tie: the first row in sorted order
    np.testing.assert_array_equal(baseline_actions(np.array([[1.15, 0.0], [0.0, 1.15]]))[Predictor.most_common],
                                  [0.0, 1.15])
    with pytest.raises(ValueError, match="train split's actions"):
        baseline_actions(np.zeros((0, 2)))


def test_compare_scores_first_action_and_chunk_beside_each_baseline() -> None:
    result = compare(PRED, TRUE, MASK, baseline_actions(TRAIN), EvalOptions(tolerance=0.15))
    first, chunk = result[Horizon.first], result[Horizon.chunk]
    assert list(first) == list(Predictor)
    assert first[Predictor.policy].count == 2 and chunk[Predictor.policy].count == 3
    np.testing.assert_allclose(first[Predictor.policy].mae, [(0.1 + 0.04) / 2, (0.1 + 0.0) / 2])
    np.testing.assert_allclose(first[Predictor.train_mean].mae, [(0.1 + 0.06) / 2, (0.2 + 0.4) / 2])
    np.testing.assert_allclose(first[Predictor.zero_velocity].mae, [(0.0 + 0.04) / 2, (0.1 + 0.3) / 2])
    np.testing.assert_allclose(chunk[Predictor.zero_velocity].mae, [0.24 / 3, 0.42 / 3])
    assert first[Predictor.zero_velocity].direction_accuracy == [1.0, 0.0]  # x: 0 = 0 twice; y: true is - twice
    assert first[Predictor.policy].success == 1.0
    # most common (0, -0.3) against the first actions (0, -0.1) and (0.04, -0.3)
    np.testing.assert_allclose(first[Predictor.most_common].mae, [0.02, 0.1])
    assert first[Predictor.most_common].success == 0.5


# -- eval of a trained model ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(trained_run: Path, learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("eval") / "out"
    code, output = run_cli("eval", str(trained_run), str(learn_store), "--split", "val", "-o", str(out))
    assert code == 0, output
    return out, output


def test_eval_of_a_trained_model_beats_both_baselines(evaluated: tuple[Path, str]) -> None:
    out, output = evaluated
    report = EvalReport.model_validate_json((out / "metrics.json").read_text())
    assert report.options.split == "val" and report.options.tolerance == 0.1
    for horizon in Horizon:
        scores = report.overall[horizon]
        policy_mae = np.mean(scores[Predictor.policy].mae)
        assert policy_mae < 0.7 * np.mean(scores[Predictor.train_mean].mae), (horizon, scores)
        assert policy_mae < np.mean(scores[Predictor.zero_velocity].mae)
        assert scores[Predictor.policy].success > scores[Predictor.train_mean].success
    assert sum(s[Horizon.first][Predictor.policy].count for s in report.scenarios.values()) == \
        report.overall[Horizon.first][Predictor.policy].count
    assert "train-mean" in output and "success@0.1" in output and "per scenario" in output


def test_eval_scores_every_anchor_and_writes_readable_files(evaluated: tuple[Path, str], learn_store: Path) -> None:
    out, _ = evaluated
    report = EvalReport.model_validate_json((out / "metrics.json").read_text())
    table = pd.read_csv(version_dir(learn_store) / "episodes.csv")
    val = table[table["split"] == "val"]
    assert report.n_episodes == len(val) and report.n_anchors == int(val["n_frames"].sum())
    # the first action of the last anchor of each episode is past its end (offset 1): never scored
    assert report.overall[Horizon.first][Predictor.policy].count == report.n_anchors - len(val)
    per_episode = pd.read_csv(out / "per_episode.csv")
    assert len(per_episode) == len(val) * len(Horizon) * len(Predictor)
    assert {"mae_linear_x", "rmse_linear_y", "direction_accuracy_linear_x", "success"} <= set(per_episode.columns)
    first_policy = per_episode[(per_episode["horizon"] == "first") & (per_episode["predictor"] == "policy")]
    assert first_policy["count"].sum() == report.overall[Horizon.first][Predictor.policy].count
    for png in ("trajectories.png", "errors.png", "scenarios.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_baselines_come_from_the_train_split_only(evaluated: tuple[Path, str], learn_store: Path) -> None:
    out, _ = evaluated
    report = EvalReport.model_validate_json((out / "metrics.json").read_text())
    group, table = zarr.open_group(segment_dir(learn_store), mode="r"), pd.read_csv(version_dir(learn_store) / "episodes.csv")
    ends, action = group["meta/episode_ends"][:], group["data/action"][:]

    def split_actions(split: str) -> np.ndarray:
        rows = table[table["split"] == split]
        pairs = zip(rows["episode"], rows["n_frames"], strict=True)
        return np.concatenate([action[ends[e] - n : ends[e]] for e, n in pairs])

    np.testing.assert_allclose(report.train_mean, split_actions("train").mean(0), rtol=1e-5)
    assert not np.allclose(report.train_mean, action.mean(0), rtol=1e-3)  # val frames would move it
    # the scripted operator drives forward most (x +1.15, no strafe): the train split's most common action
    assert report.most_common == [1.15, 0.0]
    forward = (np.abs(split_actions("train") - [1.15, 0.0]) < 1e-6).all(1).mean()
    assert forward > 0.3, forward


# -- Policy and PolicyRunner ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def window8_run(learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-step run at W=8, K=4 (longer windows than the trained fixture, so padding is exercised)."""
    config = TrainConfig.model_validate({
        "data": {"store": str(learn_store), "window": {"window": 8, "chunk": 4}},
        "model": SMALL_MODEL,
        "optim": {"lr": 1e-2, "batch_size": 4, "max_steps": 3},
        "log": {"val_every": 3, "val_batches": 1, "save_every": 3},
    })
    run = tmp_path_factory.mktemp("w8") / "run"
    train(config, run)
    return run


def _raw_episode(learn_store: Path, episode: int) -> tuple[Path, np.ndarray]:
    source = pd.read_csv(version_dir(learn_store) / "episodes.csv").set_index("episode").loc[episode, "source_path"]
    path = Path(source) if Path(source).is_absolute() else learn_store.parent / "raw" / source
    with h5py.File(path, "r") as f:
        return path, f["images"][()]


def test_runner_equals_the_batch_model_on_every_window(window8_run: Path, learn_store: Path) -> None:
    policy = Policy.from_checkpoint(window8_run, "cpu")  # LoRA merged into the backbone for inference
    assert policy.path.name == "checkpoint-3" and policy.window == 8 and policy.chunk == 4
    batch_model, _ = load_policy(window8_run)  # the trained model as training runs it: LoRA unmerged
    assert policy.model.lora_merged and not batch_model.lora_merged
    ds = WindowDataset(learn_store, "val", WindowSpec(window=8, chunk=4))
    e = 0
    path, raw = _raw_episode(learn_store, int(ds.episode_ids[e]))
    runner = policy.runner()
    runner.reset(ds.instructions[e])
    indices = np.flatnonzero(ds.which == e)
    assert len(raw) == len(indices) > 8
    for t, frame in enumerate(raw):
        stepped = runner.step(frame)  # raw BGR frame, resized by the checkpoint's preprocessing
        sample = ds[int(indices[t])]  # stored frames, the window padded as in training
        with torch.no_grad():
            batch = batch_model({c: f[None] for c, f in sample["rgb"].items()}, [sample["instruction"]])[0, -1]
        expected = policy.normalizer.denormalize(batch.numpy())
        np.testing.assert_allclose(stepped, expected, atol=RUNNER_ATOL, err_msg=f"frame {t}")
        np.testing.assert_allclose(policy.predict(raw[max(0, t - 7) : t + 1], ds.instructions[e]), expected,
                                   atol=RUNNER_ATOL)
    assert runner.steps == len(raw)
    whole = policy.episode_chunks(ds.frames.episode(e), ds.instructions[e])
    np.testing.assert_allclose(whole[-1], stepped, atol=RUNNER_ATOL)


def test_runner_refuses_misuse(window8_run: Path) -> None:
    runner = Policy.from_checkpoint(window8_run, "cpu").runner()
    frame = np.zeros((48, 80, 3), np.uint8)
    with pytest.raises(RuntimeError, match="reset"):
        runner.step(frame)
    with pytest.raises(ValueError, match="non-empty"):
        runner.reset("  ")
    runner.reset("go to the bottle on the left")
    with pytest.raises(ValueError, match="uint8"):
        runner.step(frame.astype(np.float32))
    with pytest.raises(ValueError, match="one"):
        runner.step(np.zeros((2, 48, 80, 3), np.uint8))
    assert runner.step(frame).shape == (4, 2)


def test_predict_runs_an_episode_shorter_than_the_window(window8_run: Path, learn_store: Path, tmp_path: Path) -> None:
    path, raw = _raw_episode(learn_store, 0)
    with h5py.File(path, "r") as f:
        actions = f["actions"][()]
    short = write_episode(tmp_path / "episode_20251110_120000_1box_hori_left_core_medium.h5",
                          Episode("short", raw[:3, ..., ::-1], actions[:3], ["episode_start"] + ["start_action"] * 2,
                                  "Reach the bottle on the left", {"num_frames": 3}))
    code, output = run_cli("predict", str(window8_run), str(short), "--json")
    assert code == 0, output
    report = PredictReport.model_validate_json(output)
    assert [s.t for s in report.steps] == [0, 1, 2] and report.window == 8
    assert np.shape(report.steps[0].predicted) == (4, 2)
    np.testing.assert_allclose([s.recorded for s in report.steps[:2]], actions[1:3, :2], rtol=1e-6)
    assert report.steps[2].recorded is None  # row 3 is past the end
    policy = Policy.from_checkpoint(window8_run, "cpu")
    np.testing.assert_allclose(report.steps[2].predicted, policy.predict(raw[:3], report.instruction), atol=RUNNER_ATOL)

    code, text = run_cli("predict", str(window8_run), str(short))
    assert code == 0 and "recorded (t+1)" in text and "first-action MAE" in text and "3 frames" in text


def test_predict_shows_a_dash_where_no_action_was_recorded(window8_run: Path, learn_store: Path, tmp_path: Path) -> None:
    path, raw = _raw_episode(learn_store, 0)
    with h5py.File(path, "r") as f:
        actions = f["actions"][()]
    one = write_episode(tmp_path / "episode_20251110_120000_1box_hori_left_core_medium.h5",
                        Episode("one", raw[:1, ..., ::-1], actions[:1], ["episode_start"], "Reach the bottle on the left",
                                {"num_frames": 1}))
    code, text = run_cli("predict", str(window8_run), str(one))
    assert code == 0, text
    lines = text.strip().splitlines()
    row = lines[-2].split()  # frame 0: two predicted values, then the two recorded (row 1: none)
    assert row[0] == "0" and row[-2:] == ["-", "-"] and "None" not in text
    assert lines[-1] == "first-action MAE: linear_x -, linear_y -"


def test_colour_order_belongs_to_the_episode_not_the_checkpoint(window8_run: Path, learn_store: Path,
                                                                tmp_path: Path) -> None:
    """Trained from BGR sources; the same episode stored as RGB predicts the same when said to be RGB."""
    path, bgr = _raw_episode(learn_store, 0)
    rgb_copy = tmp_path / path.name
    shutil.copy(path, rgb_copy)
    with h5py.File(rgb_copy, "r+") as f:
        del f["images"]
        f.create_dataset("images", data=bgr[..., ::-1], compression="gzip")
    (tmp_path / "rgb.yaml").write_text("color_order: rgb\n")
    words = ["--instruction", "Navigate to the bottle on the left"]
    as_trained = predict_json(str(window8_run), str(path), *words)
    assert as_trained.color_orders == {"rgb": "bgr"}  # the checkpoint's camera's order when none is given
    for given in (["--color-order", "rgb"], ["--recorder-config", str(tmp_path / "rgb.yaml")]):
        read = predict_json(str(window8_run), str(rgb_copy), *words, *given)
        assert read.color_orders == {"rgb": "rgb"} and read.steps == as_trained.steps, given
    misread = predict_json(str(window8_run), str(rgb_copy), *words)  # RGB frames taken for the recorder's BGR
    assert misread.steps != as_trained.steps

    policy = Policy.from_checkpoint(window8_run, "cpu")
    instruction = as_trained.instruction
    np.testing.assert_array_equal(policy.predict(bgr[::-1][:8], instruction, color_order="rgb"),
                                  policy.predict(bgr[::-1][:8, ..., ::-1], instruction))
    runner, rgb_runner = policy.runner(), policy.runner(color_order="rgb")
    runner.reset(instruction)
    rgb_runner.reset(instruction)
    for frame in bgr[:3]:
        np.testing.assert_array_equal(rgb_runner.step(frame[..., ::-1]), runner.step(frame))


# -- refusals ---------------------------------------------------------------------------------------------------
def test_eval_refuses_a_store_that_does_not_fit_the_checkpoint(window8_run: Path, learn_store: Path,
                                                              tmp_path: Path) -> None:
    other = tmp_path / "other.zarr"
    code, output = run_cli("build-splits", str(learn_store.parent / "raw"), "-o", str(other), "--image-size", "48",
                           "--action-channels", "0,1,2")
    assert code == 0, output
    code, output = run_cli("eval", str(window8_run), str(other), "-o", str(tmp_path / "out"))
    assert code == 1 and "Traceback" not in output
    assert "action dimension: checkpoint 2, store 3" in output
    assert "preprocessing image_size: checkpoint 56, store 48" in output
    assert not (tmp_path / "out").exists()


def test_corrupt_or_partial_checkpoints_are_refused(window8_run: Path, learn_store: Path, tmp_path: Path) -> None:
    episode = str(_raw_episode(learn_store, 0)[0])
    source = window8_run / "checkpoint-3"
    cases = {
        "heads": (lambda c: (c / HEADS).write_bytes((c / HEADS).read_bytes()[:-10]), "does not match its checksum"),
        "adapter": (lambda c: (c / ADAPTER).unlink(), "missing; the checkpoint is partial"),
        "meta": (lambda c: (c / META).write_text("{not json"), "unreadable"),
        "nometa": (lambda c: (c / META).unlink(), "neither a checkpoint nor a run folder"),
        "format": (lambda c: (c / META).write_text(json.dumps({"format_version": 1})), "checkpoint format 1"),
    }
    for name, (damage, message) in cases.items():
        broken = tmp_path / name
        shutil.copytree(source, broken)
        damage(broken)
        for args in (["eval", str(broken), str(learn_store), "-o", str(tmp_path / "out")],
                     ["predict", str(broken), episode]):
            code, output = run_cli(*args)
            assert code == 1 and message in output and "Traceback" not in output, (name, args[0], output)


def test_a_local_backbone_is_found_from_any_directory_or_by_model(learn_store: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Trained with a relative --model from one directory, used from another; moved, found again by --model;
    a backbone of other shapes refused by name."""
    project, elsewhere, moved, other = (tmp_path / name for name in ("project", "elsewhere", "moved", "other"))
    elsewhere.mkdir()
    tiny = build_tiny_random()
    for part in (tiny.model, tiny.tokenizer):
        part.save_pretrained(project / "models" / "tiny")
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", str(learn_store), "-o", "run", "--model", "models/tiny", "--max-steps", "2",
                           "--window", "2", "--chunk", "4", "--hidden", "16", "--lora-r", "4", "--batch-size", "2",
                           "--val-batches", "1"], cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = project / "run"
    assert ckpt.load_meta(ckpt.resolve(run)).backbone.source == str((project / "models" / "tiny").resolve())

    monkeypatch.chdir(elsewhere)
    code, output = run_cli("eval", str(run), str(learn_store), "-o", "out")
    assert code == 0, output
    assert EvalReport.model_validate_json((elsewhere / "out" / "metrics.json").read_text()).n_anchors > 0
    episode, frames = _raw_episode(learn_store, 0)
    before = predict_json(str(run), str(episode))
    shutil.move(project / "models" / "tiny", moved)
    code, output = run_cli("predict", str(run), str(episode))
    assert code == 1 and "not found here" in output and "pass --model DIR" in output and "Traceback" not in output
    assert predict_json(str(run), str(episode), "--model", str(moved)).steps == before.steps
    policy = Policy.from_checkpoint(run, "cpu", model=moved)
    np.testing.assert_allclose(policy.predict(frames, before.instruction), before.steps[-1].predicted, atol=RUNNER_ATOL)

    config = tiny_config(len(tiny.tokenizer))
    config.text_config.layers = 1
    Kosmos2Model(config).save_pretrained(other)
    tiny.tokenizer.save_pretrained(other)
    code, output = run_cli("eval", str(run), str(learn_store), "-o", "refused", "--model", str(other))
    assert code == 1 and "Traceback" not in output and not Path("refused").exists()
    assert f"the backbone {other} is not the one the checkpoint was trained on" in output
    assert "text_config.layers: checkpoint 2, found 1" in output


def test_a_device_this_machine_lacks_is_refused(window8_run: Path, learn_store: Path) -> None:
    episode = str(_raw_episode(learn_store, 0)[0])
    code, output = run_cli("predict", str(window8_run), episode, "--device", "gpu0")
    assert code == 1 and "not a torch device" in output
    if not torch.cuda.is_available():
        code, output = run_cli("predict", str(window8_run), episode, "--device", "cuda")
        assert code == 1 and "no CUDA GPU is visible" in output


def _episode_result(episode: int, n: int) -> EpisodeResult:
    """``n`` anchors of one episode at action offset 1: the last anchor's first action is past the end."""
    t = np.arange(n)
    true = np.stack([np.sin(t / 50.0), np.cos(t / 50.0)], -1)[:, None].repeat(2, 1)  # (n, K=2, A=2)
    mask = np.ones((n, 2), bool)
    mask[-1] = False
    mask[-2:, 1] = False
    return EpisodeResult(episode, "1box_hori_left", "Reach the bottle on the left", t, true + 0.1, true * mask[..., None], mask)


def test_a_report_from_before_the_most_common_baseline_reads_back(evaluated: tuple[Path, str]) -> None:
    out, _ = evaluated
    written = json.loads((out / "metrics.json").read_text())
    del written["most_common"]
    old = EvalReport.model_validate(written)
    assert old.most_common is None and list(old.baselines()) == [Predictor.train_mean, Predictor.zero_velocity]


def test_trajectories_stay_readable_for_long_and_one_frame_episodes() -> None:
    from pipelines.eval_plots import PANEL_FRAMES, trajectories_figure

    one, long, two = _episode_result(7, 1), _episode_result(8, 3000), _episode_result(9, 2)
    report = EvalReport(tool_version="0", checkpoint="c", step=0, store="s", options=EvalOptions(plot_episodes=2),
                        action_names=["linear_x", "linear_y"], n_episodes=3, n_anchors=3003, train_mean=[0.0, 0.0],
                        most_common=[1.15, 0.0],
                        overall={}, scenarios={})
    fig = trajectories_figure(report, [one, long, two])
    rows = [fig.axes[i : i + 2] for i in range(0, len(fig.axes), 2)]
    # episodes with a recorded first action first: the 1-frame episode (none at offset 1) waits its turn
    assert [ax.get_title().split(" (")[0] for ax, _ in rows] == ["episode 8", "episode 9"]
    recorded, policy, _ = rows[0][1].get_lines()
    assert rows[0][1].get_title().endswith("linear_y, frames 0-299 of 3000")
    assert np.array_equal(policy.get_xdata(), np.arange(PANEL_FRAMES))
    assert np.allclose(policy.get_ydata(), long.pred[:PANEL_FRAMES, 0, 1])
    assert np.array_equal(recorded.get_xdata(), np.arange(PANEL_FRAMES)) and policy.get_marker() == "None"
    recorded, policy, _ = rows[1][0].get_lines()
    assert rows[1][0].get_title().endswith("linear_x, 2 frames")
    assert recorded.get_xdata().tolist() == [0] and policy.get_xdata().tolist() == [0, 1]
    assert recorded.get_marker() == policy.get_marker() == "o"  # a single point is visible
    fig = trajectories_figure(report.model_copy(update={"options": EvalOptions(plot_episodes=5)}), [one, long, two])
    recorded, policy, _ = fig.axes[-1].get_lines()
    assert fig.axes[-1].get_title().startswith("episode 7") and fig.axes[-1].get_title().endswith("1 frame, none recorded")
    assert len(recorded.get_xdata()) == 0 and policy.get_xdata().tolist() == [0] and policy.get_marker() == "o"


def test_predict_warns_when_the_frames_have_another_aspect_than_trained_on(window8_run: Path, learn_store: Path,
                                                                           tmp_path: Path) -> None:
    path, raw = _raw_episode(learn_store, 0)  # the store's sources are 48x80
    with h5py.File(path, "r") as f:
        actions = f["actions"][()]
    assert ckpt.load_meta(ckpt.resolve(window8_run)).source_frame_sizes == ["48x80"]
    for name, frames, warned in (("same", raw[:3], False), ("square", raw[:3, :, :48], True)):
        episode = write_episode(tmp_path / f"episode_20251110_12000{int(warned)}_1box_hori_left_core_medium.h5",
                                Episode(name, frames[..., ::-1], actions[:3], ["episode_start"] + ["start_action"] * 2,
                                        "Reach the bottle on the left", {"num_frames": 3}))
        result = CliRunner().invoke(main, ["predict", str(window8_run), str(episode), "--json"])
        assert result.exit_code == 0, result.output
        report = PredictReport.model_validate_json(result.stdout)
        assert bool(report.warnings) == warned and ("frames are 48x48 (aspect 1.00)" in result.stderr) == warned
        if warned:
            assert "trained on 48x80 (aspect 1.67)" in report.warnings[0]


def test_a_half_copied_newest_checkpoint_is_skipped_with_a_line_and_refused_by_name(window8_run: Path,
                                                                                     learn_store: Path,
                                                                                     tmp_path: Path) -> None:
    run = Path(shutil.copytree(window8_run, tmp_path / "run"))
    (good,) = sorted(run.glob("checkpoint-*"))
    for broken, keep in (("checkpoint-900", {"adapter.safetensors"}), ("checkpoint-800", {"checkpoint.json"})):
        (run / broken).mkdir()
        for name in keep:  # a copy stopped half-way: some files only
            shutil.copy(good / name, run / broken / name)
    episode = str(sorted((learn_store.parent / "raw").glob("*.h5"))[0])
    code, text = run_cli("predict", str(run), episode)
    assert code == 0, text
    assert f"warning: skipped {run / 'checkpoint-900'}: not a checkpoint (no checkpoint.json)" in text, text
    assert f"skipped {run / 'checkpoint-800'}: " in text and f"using {good.name}" in text
    code, text = run_cli("predict", str(run / "checkpoint-900"), episode)
    assert code == 1 and "an incomplete checkpoint (no checkpoint.json" in text and "Traceback" not in text, text
