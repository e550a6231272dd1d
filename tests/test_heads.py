"""The action head (vla_model.heads): a discrete head's levels come from the train split, its readout and loss
are the ones described, and every command runs a discrete-head policy as it runs a regression one; checkpoints
from before heads load as regression heads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import learned, run_cli as run
from pipelines.evaluate import evaluate_checkpoint
from schemas.evaluation import EvalOptions, Horizon, Predictor
from schemas.store import ChannelStats, NormStats
from schemas.train import LOG_FILE, Readout
from vla_data.samples.normalize import Normalizer
from vla_model import checkpoint as ckpt
from vla_model.heads import Levels, action_levels
from vla_model.loading import load_policy
from vla_model.runtime import Policy


def normalizer(means: list[float], stds: list[float]) -> Normalizer:
    channels = [ChannelStats(count=10, mean=m, std=s, min=-2, max=2, q01=-2, q99=2) for m, s in zip(means, stds)]
    return Normalizer(NormStats(action=channels, image_mean=[0.5] * 3, image_std=[0.25] * 3))


def test_levels_are_the_teleop_values_or_quantile_bins_and_mirrored_channels_are_symmetric() -> None:
    rng = np.random.default_rng(0)
    teleop = rng.choice([-1.15, 0.0, 1.15], 500)
    forward_only = rng.choice([0.0, 1.15], 500)
    continuous = rng.normal(0.3, 1.0, 500)
    actions = np.stack([teleop, forward_only, continuous], 1).astype(np.float32)
    levels = action_levels(actions, bins=8)
    assert levels[0] == [-1.15, 0.0, 1.15] and levels[1] == [0.0, 1.15]
    assert len(levels[2]) == 8 and levels[2] == sorted(levels[2])
    np.testing.assert_allclose(levels[2], np.quantile(continuous.astype(np.float32), (np.arange(8) + 0.5) / 8), atol=1e-6)
    mirrored = action_levels(actions, bins=8, mirrored=[1])  # the mirror negates channel 1: its levels follow
    assert mirrored[1] == [-1.15, 0.0, 1.15] and mirrored[0] == levels[0] and mirrored[2] == levels[2]


def test_the_readout_and_loss_of_a_discrete_head() -> None:
    norm = normalizer([0.5, 0.0], [0.5, 1.0])
    levels = Levels([[-1.15, 0.0, 1.15], [0.0, 1.0]], norm, Readout.expected)
    assert levels.physical == [[-1.15, 0.0, 1.15], [0.0, 1.0]]
    np.testing.assert_allclose(levels.values[0].numpy(), (np.array([-1.15, 0.0, 1.15]) - 0.5) / 0.5, rtol=1e-6)
    assert levels.valid.tolist() == [[True, True, True], [True, True, False]]
    raw = torch.zeros(1, 1, 1, 2 * 3)  # (B, W, K, A * L): every valid level equally likely
    logits = levels.logits(raw)
    expected = levels.readout(logits)[0, 0, 0]
    np.testing.assert_allclose(expected.numpy(), [levels.values[0].mean(), levels.values[1, :2].mean()], rtol=1e-6)
    raw[..., 2] = 5.0  # channel 0 sure of +1.15
    most_likely = Levels(levels.physical, norm, Readout.most_likely).readout(levels.logits(raw))[0, 0, 0]
    assert norm.denormalize(most_likely.numpy()[None])[0, 0] == pytest.approx(1.15, abs=1e-6)
    target = torch.from_numpy(norm.normalize(np.array([[1.1, 0.2]], np.float32))).view(1, 1, 1, 2)
    assert levels.nearest(target).tolist() == [[[[2, 0]]]]  # 1.1 -> +1.15, 0.2 -> 0.0
    mask = torch.ones(1, 1, 1, dtype=torch.bool)
    confident = levels.loss(levels.logits(torch.tensor([[[[-5.0, -5.0, 5.0, 5.0, -5.0, 0.0]]]])), target, mask)
    unsure = levels.loss(levels.logits(torch.zeros(1, 1, 1, 6)), target, mask)
    assert float(confident) < 0.01 < float(unsure)
    assert float(levels.loss(logits, target, torch.zeros_like(mask))) == 0.0  # nothing unmasked: 0, not NaN


def test_the_level_confusion_counts_nearest_levels() -> None:
    from vla_model.metrics import level_confusion

    true = np.array([-1.15, 0.0, 1.15, 1.15, 0.0])
    pred = np.array([-0.9, 0.4, 0.7, 1.1, -1.0])  # -> -1.15, 0, +1.15, +1.15, -1.15
    mask = np.array([True, True, True, True, False])
    assert level_confusion(pred, true, mask, [-1.15, 0.0, 1.15]).counts == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]


@pytest.fixture(scope="module")
def discrete_run(learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A discrete-head run trained with the options a run may take (mirror, segment batches), then resumed."""
    run_dir = tmp_path_factory.mktemp("discrete") / "run"
    code, text = run("train", str(learn_store), "-o", str(run_dir), "--head", "discrete", "--max-steps", "2",
                     "--window", "2", "--chunk", "3", "--hidden", "16", "--lora-r", "2", "--batch-size", "4",
                     "--augment", "mirror", "--batching", "segments", "--segment-length", "2",
                     "--val-every", "2", "--save-every", "2", "--val-batches", "1")
    assert code == 0, text
    code, text = run("train", "--resume", str(run_dir), "--max-steps", "3")
    assert code == 0 and "trained 3 steps" in text, text
    return run_dir


def test_the_discrete_head_under_bf16_autocast_gives_fp32_logits_and_gradients() -> None:
    """bf16 training runs the backbone under autocast; the head (and its loss) stays fp32."""
    from schemas.train import ModelConfig
    from vla_model.backbone import build_tiny_random
    from vla_model.policy import VLAPolicy

    levels = Levels([[0.0, 1.15], [-1.15, 0.0, 1.15]], normalizer([0.5, 0.0], [0.5, 0.8]), Readout.expected)
    policy = VLAPolicy(build_tiny_random(), ModelConfig(head="discrete", hidden=16), 2, 3, levels=levels)
    features = torch.randn(2, 4, policy.action_query.shape[0], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = policy.outputs(features.to(torch.bfloat16))
        loss = policy.loss(logits, torch.zeros(2, 4, 3, 2), torch.ones(2, 4, 3, dtype=torch.bool), 1.0)
    assert logits.dtype == torch.float32 and logits.shape == (2, 4, 3, 2, 3) and torch.isfinite(loss)
    loss.backward()
    assert policy.chunk_head.weight.grad is not None and torch.isfinite(policy.chunk_head.weight.grad).all()
    assert policy.act(features).shape == (2, 4, 3, 2)


def test_every_command_runs_a_discrete_head(discrete_run: Path, learn_store: Path, tmp_path: Path) -> None:
    meta = ckpt.load_meta(ckpt.resolve(discrete_run))
    assert meta.train_config.model.head.value == "discrete" and meta.action_levels == [[0.0, 1.15], [-1.15, 0.0, 1.15]]
    policy = Policy.from_checkpoint(discrete_run, "cpu")
    assert policy.model.levels is not None and policy.model.chunk_head.out_features == 3 * 2 * 3
    episode = sorted((learn_store.parent / "raw").glob("*.h5"))[0]
    code, text = run("predict", str(discrete_run), str(episode), "--json")
    assert code == 0, text
    predicted = np.array([s["predicted"] for s in json.loads(text)["steps"]])
    assert predicted.min() >= -1.15 - 1e-5 and predicted.max() <= 1.15 + 1e-5  # expected values lie within the levels
    code, text = run("eval", str(discrete_run), str(learn_store), "-o", str(tmp_path / "eval"), "--plot-episodes", "1")
    assert code == 0, text
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    confusion = report["level_confusion"]
    assert list(confusion) == ["linear_x", "linear_y"] and confusion["linear_y"]["levels"] == [-1.15, 0.0, 1.15]
    first = report["overall"]["first"]["policy"]["count"]  # every scored first action, counted once per channel
    assert all(sum(map(sum, c["counts"])) == first for c in confusion.values())
    assert "linear_x: first actions by level, recorded (rows) x predicted (columns)" in text
    code, text = run("export", str(discrete_run), "-o", str(tmp_path / "policy"))
    assert code == 0 and "parity on" in text, text
    from pipelines.serve import serving
    from schemas.serve import ServeConfig
    from vla_client.client import PolicyClient

    with h5py.File(episode) as f:
        frames = f["images"][:3]
    runner = policy.runner()
    runner.reset("go to the bottle on the left")
    with serving(policy, ServeConfig(port=0)) as server, PolicyClient(server.url) as client:
        client.reset("go to the bottle on the left")
        for frame in frames:  # served chunks are the runner's, read out the same way
            np.testing.assert_allclose(client.step(frame), runner.step(frame), atol=1e-6)


@pytest.fixture(scope="module")
def discrete_learned(learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learning test's run (conftest.learned) with a discrete head."""
    return learned(learn_store, tmp_path_factory.mktemp("discrete-learned"), {"mode": "windows"}, 16, head="discrete",
                   steps=600)


def test_a_discrete_head_learns_the_task_and_beats_the_baselines(discrete_learned: Path, learn_store: Path) -> None:
    """Its loss falls; on the val split its MAE is under 70% of the train mean's and under standing still's, and its
    success@0.1 above both, for the first action and the whole chunk."""
    losses = [r["loss"] for r in map(json.loads, (discrete_learned / LOG_FILE).read_text().splitlines()) if "loss" in r]
    assert losses[-1] < 0.5 * losses[0], losses
    report, _ = evaluate_checkpoint(discrete_learned, learn_store, EvalOptions(), progress=False)
    for horizon in Horizon:
        scores = report.overall[horizon]
        mae = {who: float(np.mean(scores[who].mae)) for who in Predictor}
        assert mae[Predictor.policy] < 0.7 * mae[Predictor.train_mean], (horizon, mae)
        assert mae[Predictor.policy] < mae[Predictor.zero_velocity], (horizon, mae)
        assert scores[Predictor.policy].success > scores[Predictor.train_mean].success, (horizon, scores)
        assert scores[Predictor.policy].success > scores[Predictor.zero_velocity].success, (horizon, scores)


def test_a_checkpoint_from_before_heads_loads_as_a_regression_head(learn_store: Path, tmp_path: Path) -> None:
    code, text = run("train", str(learn_store), "-o", str(tmp_path / "run"), "--max-steps", "1", "--window", "2",
                     "--chunk", "3", "--hidden", "16", "--lora-r", "2", "--batch-size", "2", "--val-every", "1",
                     "--save-every", "1", "--val-batches", "1")
    assert code == 0, text
    old = tmp_path / "old"
    shutil.copytree(ckpt.resolve(tmp_path / "run"), old)
    meta = json.loads((old / "checkpoint.json").read_text())
    for key in ("head", "bins", "readout"):
        meta["train_config"]["model"].pop(key)
    meta.pop("action_levels")
    (old / "checkpoint.json").write_text(json.dumps(meta))
    policy, loaded = load_policy(old)
    assert loaded.train_config.model.head.value == "regression" and policy.levels is None
    assert policy.chunk_head.out_features == loaded.train_config.data.window.chunk * len(loaded.action_names)
