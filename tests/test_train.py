"""vla-data train: the loss, the preflight refusals, checkpoints, exact resume, 2 processes, and learning."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import LEARN_BUILD, SMALL_MODEL, Start, run_cli
from safetensors.torch import load_file

from vla_data.build.job import build_store
from pipelines.cli import main
from pipelines.evaluate import evaluate_checkpoint
from pipelines.cli.flags import worded
from schemas import RecorderSettings
from schemas.evaluation import EvalOptions
from schemas.sample import SampleField, WindowSpec
from schemas.store import BuildOptions, Preprocessing, SplitConfig
from schemas.train import ModelConfig, TrainConfig
from vla_data.samples.dataset import WindowDataset
from vla_data.samples.loader import make_loader
from vla_data.store.reader import open_store
from vla_model import Policy
from vla_model import checkpoint as ckpt
from vla_model.backbone import build_tiny_random
from vla_model.loading import load_policy
from vla_model.loss import masked_huber
from vla_model.policy import VLAPolicy
from vla_model.preflight import PreflightError, preflight
from vla_model.trainer import CONFIG_FILE, LOG_FILE, SUMMARY_FILE, TrainSummary, train, window_mae


SEGMENT_BATCHES = {"batching": {"mode": "segments", "segment_length": 4}}


def config(store: Path, data: dict | None = None, **optim: object) -> TrainConfig:
    return TrainConfig.model_validate({
        "data": {"store": str(store), "window": {"window": 2, "chunk": 4}, **(data or {})},
        "model": SMALL_MODEL,
        "optim": {"lr": 2e-3, "batch_size": 8, "max_steps": 6, **optim},
        "log": {"log_every": 1, "val_every": 3, "val_batches": 2, "save_every": 3, "keep_last": 1},
    })


def test_masked_huber_averages_over_unmasked_entries_only() -> None:
    pred = torch.zeros(1, 1, 3, 2)
    target = torch.tensor([[[[0.5, -0.5], [3.0, 0.0], [100.0, 100.0]]]])
    mask = torch.tensor([[[True, True, False]]])
    # entries: 0.5*0.5^2, 0.5*0.5^2, (3 - 0.5) for |3| > delta 1, 0  -> mean over 4 unmasked entries
    assert masked_huber(pred, target, mask).item() == pytest.approx((0.125 + 0.125 + 2.5 + 0.0) / 4)
    assert masked_huber(pred, target, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError, match="disagree"):
        masked_huber(pred, target[..., :1], mask)


@pytest.fixture(scope="module")
def batch_and_policy(learn_store: Path) -> tuple[dict, VLAPolicy, WindowDataset]:
    ds = WindowDataset(learn_store, "train", WindowSpec(window=2, chunk=4))
    batch = next(iter(make_loader(ds, 4, seed=0)))
    policy = VLAPolicy(build_tiny_random(), ModelConfig.model_validate(SMALL_MODEL), action_dim=2, chunk=4)
    return batch, policy, ds


def test_preflight_passes_a_sound_setup_and_leaves_no_gradients(batch_and_policy) -> None:
    batch, policy, ds = batch_and_policy
    counts = preflight(policy, batch, ds.manifest, 2, 1.0)
    assert counts["lora"] > 0 and counts["heads"] > 0
    assert all(p.grad is None for p in policy.parameters())


def test_preflight_refuses_all_padding_targets(batch_and_policy) -> None:
    batch, policy, ds = batch_and_policy
    padded = batch | {SampleField.chunk_mask: torch.zeros_like(batch[SampleField.chunk_mask])}
    with pytest.raises(PreflightError, match="no unmasked action target.*set data.window.action_offset=N") as refused:
        preflight(policy, padded, ds.manifest, 2, 1.0)
    # the Python API names the settings, the CLI the flags that set them
    assert worded(refused.value).endswith("pass --action-offset N --chunk K that fit the episodes")


def test_preflight_refuses_frozen_heads_and_wrong_shapes(batch_and_policy) -> None:
    batch, policy, ds = batch_and_policy
    heads = policy.parameter_groups()["heads"]
    for p in heads:
        p.requires_grad_(False)
    try:
        with pytest.raises(PreflightError, match=r"\['heads'\] have nothing trainable"):
            preflight(policy, batch, ds.manifest, 2, 1.0)
    finally:
        for p in heads:
            p.requires_grad_(True)
    with pytest.raises(PreflightError, match=r"batch rgb\[rgb\] has shape .* expects"):
        preflight(policy, batch, ds.manifest, 3, 1.0)
    wide = VLAPolicy(build_tiny_random(), ModelConfig.model_validate(SMALL_MODEL), action_dim=3, chunk=4)
    with pytest.raises(PreflightError, match="actions has shape"):
        preflight(wide, batch, ds.manifest, 2, 1.0)


def test_preflight_refuses_non_finite_stats(batch_and_policy) -> None:
    batch, policy, ds = batch_and_policy
    stats = ds.manifest.stats
    broken = stats.model_copy(update={"action": [stats.action[0].model_copy(update={"std": float("nan")}), *stats.action[1:]]})
    with pytest.raises(PreflightError, match="stats are missing or not finite"):
        preflight(policy, batch, ds.manifest.model_copy(update={"stats": broken}), 2, 1.0)


# A probe on every backbone call of `vla-data train`, run as a real process (accelerate fixes one precision per
# process): the autocast state, activation checkpointing, and train/eval mode.
PROBE = """
import json, sys
from pathlib import Path
import torch
from transformers import Kosmos2Model

seen = []

def observe(module, args, output):
    if isinstance(module, Kosmos2Model):
        seen.append({"autocast": torch.is_autocast_enabled("cpu"), "dtype": str(torch.get_autocast_dtype("cpu")),
                     "checkpointing": module.is_activation_checkpointing, "training": module.training})

torch.nn.modules.module.register_module_forward_hook(observe)
from pipelines.cli import main
try:
    main(sys.argv[2:])
finally:
    Path(sys.argv[1]).write_text(json.dumps(seen))
"""


def test_preflight_runs_in_the_training_precision_and_checkpointing(learn_store: Path, tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    cmd = [sys.executable, "-c", PROBE, str(seen), "train", str(learn_store), "-o", str(tmp_path / "run"),
           "--precision", "bf16", "--gradient-checkpointing", "--max-steps", "1", "--window", "2", "--chunk", "4",
           "--hidden", "16", "--lora-r", "4", "--batch-size", "2", "--val-batches", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    preflight_call, step, val = json.loads(seen.read_text())  # the preflight's forward comes before the step's
    training = {"autocast": True, "dtype": "torch.bfloat16", "checkpointing": True, "training": True}
    assert preflight_call == training and step == training
    assert val == training | {"training": False}


def test_activation_checkpointing_is_for_training_only(learn_store: Path, tmp_path: Path) -> None:
    """A checkpoint trained with checkpointing loads for inference without it; no deprecated call is made."""
    run = tmp_path / "run"
    cfg = config(learn_store, max_steps=1)
    cfg.model.gradient_checkpointing = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, run)
        policy, meta = load_policy(run)
        served = Policy.from_checkpoint(run, "cpu")
    assert meta.train_config.model.gradient_checkpointing
    assert not policy.backbone.is_activation_checkpointing and not served.model.backbone.is_activation_checkpointing
    deprecated = [str(w.message) for w in caught if issubclass(w.category, FutureWarning) and "checkpointing" in str(w.message)]
    assert deprecated == []


def test_checkpoints_are_small_pickle_free_verified_and_pruned(learn_store: Path, tmp_path: Path,
                                                                umask_022: int) -> None:
    run = tmp_path / "run"
    summary = train(config(learn_store), run)
    assert summary.steps == 6 and summary.processes == 1 and summary.ranks_identical
    kept = [p.name for p in ckpt.checkpoints(run)]
    assert f"checkpoint-{summary.best_step}" in kept and "checkpoint-6" in kept and len(kept) <= 2
    path = run / "checkpoint-6"
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert files == sorted(["checkpoint.json", "adapter.safetensors", "heads.safetensors", "resume/optimizer.safetensors",
                            "resume/rng.safetensors", "resume/state.json"])
    assert all(not (p.read_bytes()[:2] == b"\x80\x04") for p in path.rglob("*") if p.is_file())  # no pickle
    assert {f: oct(stat.S_IMODE((path / f).stat().st_mode)) for f in files} == {f: oct(umask_022) for f in files}
    run_files = ["train_config.json", "summary.json", "log.jsonl"]  # readable by others; no temporary left behind
    assert {str(p.relative_to(run)) for p in run.glob("*") if p.is_file()} == {*run_files} and all(
        stat.S_IMODE((run / f).stat().st_mode) == umask_022 for f in run_files)
    meta = ckpt.load_meta(path)
    assert meta.step == 6 and meta.action_names == ["linear_x", "linear_y"] and meta.preprocessing.image_size == 56
    policy, _ = load_policy(run)  # the latest checkpoint, from the folder alone
    adapter = load_file(path / "adapter.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    first = next(iter(adapter))
    assert torch.equal(policy.adapter_state()[first], adapter[first])  # peft's names, as get_peft_model_state_dict
    lines = [json.loads(line) for line in (run / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6] and "val_loss" in lines[2] and "lr" in lines[0]
    assert [r["samples"] for r in lines] == [8 * s for s in range(1, 7)]  # batch 8, logged every step
    assert all(0 < a["elapsed_s"] < b["elapsed_s"] for a, b in zip(lines, lines[1:]))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert TrainSummary.model_validate_json((run / SUMMARY_FILE).read_text()).steps == 6

    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(path, damaged)
    raw = bytearray((damaged / "heads.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (damaged / "heads.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="heads.safetensors does not match its checksum"):
        ckpt.load_meta(damaged)
    (damaged / "adapter.safetensors").unlink()
    with pytest.raises(ckpt.CheckpointError, match="adapter.safetensors is missing"):
        ckpt.load_meta(damaged)


@pytest.mark.parametrize("data", [None, SEGMENT_BATCHES | {"augment": "mirror"}], ids=["windows", "segments"])
def test_resume_continues_exactly(learn_store: Path, tmp_path: Path, data: dict | None) -> None:
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(config(learn_store, data, accumulation=2), straight)
    train(config(learn_store, data, accumulation=2), stopped, stop_after=3)
    assert [p.name for p in ckpt.checkpoints(stopped)][-1] == "checkpoint-3"
    result = CliRunner().invoke(main, ["train", "--resume", str(stopped)])
    assert result.exit_code == 0, result.output
    a, b = load_file(straight / "checkpoint-6" / "heads.safetensors"), load_file(stopped / "checkpoint-6" / "heads.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a, b = (load_file(r / "checkpoint-6" / "adapter.safetensors") for r in (straight, stopped))
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[json.loads(line)["loss"] for line in (r / LOG_FILE).read_text().splitlines()] for r in (straight, stopped)]
    assert losses[0] == losses[1]  # steps 1-3 before the stop, 4-6 after the resume


def _logged(run: Path) -> list[dict]:
    log = run / LOG_FILE
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_resume_after_sigkill_continues_exactly(clean_dir: Path, tmp_path: Path, start: Start) -> None:
    """A real process killed (SIGKILL) past checkpoint-12, in its third epoch, with LoRA dropout, accumulation and
    a log window the checkpoint splits: the resumed run logs and ends exactly as an uninterrupted one."""
    store = tmp_path / "ds.zarr"  # 76 train samples: 10 batches of 8, 5 steps per epoch
    build_store([clean_dir], store, BuildOptions(preprocessing=Preprocessing(image_size=56),
                                                  splits=SplitConfig(val_ratio=0.25)), RecorderSettings())
    cli = [sys.executable, "-m", "pipelines.cli", "train"]
    flags = [str(store), "--max-steps", "18", "--window", "2", "--chunk", "4", "--hidden", "16", "--lora-r", "4",
             "--lora-dropout", "0.1", "--batch-size", "8", "--accumulation", "2", "--log-every", "5",
             "--save-every", "6", "--val-every", "6", "--val-batches", "1", "--keep-last", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same float arithmetic in every process
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = start([*cli, *flags, "-o", str(straight)], env=env, stderr=subprocess.PIPE, text=True)
    victim = start([*cli, *flags, "-o", str(killed)], env=env, stderr=subprocess.DEVNULL)
    while victim.poll() is None and not any(line["step"] == 15 for line in _logged(killed)):
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL  # killed mid-run: steps 13-15 done and logged, no checkpoint-18
    assert [p.name for p in ckpt.checkpoints(killed)] == ["checkpoint-6", "checkpoint-12"]
    resumed = subprocess.run([*cli, "--resume", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()[-3000:]

    fields = ("step", "epoch", "loss", "lr", "val_loss")
    logs = [[tuple(line.get(f) for f in fields) for line in _logged(run)] for run in (straight, killed)]
    assert [row[0] for row in logs[1]] == [5, 6, 10, 12, 15, 18]  # each step once; 15 as the resumed run logged it
    assert logs[0] == logs[1]
    for name in ("adapter.safetensors", "heads.safetensors", "resume/optimizer.safetensors"):
        a, b = (load_file(run / "checkpoint-18" / name) for run in (straight, killed))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_train_cli_refuses_broken_setups_with_clear_messages(learn_store: Path, tmp_path: Path) -> None:
    base = ["train", str(learn_store), "--max-steps", "1", "--window", "2", "--chunk", "4", "--hidden", "16"]
    code, out = run_cli(*base, "-o", str(tmp_path / "a"), "--lora-targets", r".*no_such_module")
    assert code == 1 and "LoRA targets" in out and "match no module" in out
    code, out = run_cli(*base, "-o", str(tmp_path / "b"), "--model", str(tmp_path / "no_model_here"))
    assert code == 1 and "no such directory" in out
    code, out = run_cli(*base, "-o", str(tmp_path / "c"), "--model", "someone/kosmos-2-not-cached")
    assert code == 1 and "not found locally" in out and "never downloads" in out
    code, out = run_cli(*base, "-o", str(tmp_path / "d"), "--precision", "fp16")
    assert code == 1 and "fp16 needs a CUDA GPU" in out
    code, out = run_cli(*base, "-o", str(tmp_path / "e"), "--val-split", "train")
    assert code == 2 and "both train" in out
    code, out = run_cli(*base, "-o", str(tmp_path / "f"), "--chunk", "4", "--action-offset", "60")
    assert code == 1 and "no unmasked action target" in out
    run = tmp_path / "ok"
    assert run_cli(*base, "-o", str(run))[0] == 0
    code, out = run_cli(*base, "-o", str(run))
    assert code == 2 and "--resume" in out
    code, out = run_cli("train", "--resume", str(run), "--lr", "0.1")
    assert code == 2 and "only --max-steps may change" in out


def test_config_file_and_flags_make_one_config(learn_store: Path, tmp_path: Path) -> None:
    from pipelines.cli.model import assemble_config

    file = tmp_path / "train.yaml"
    file.write_text(f"data:\n  store: {learn_store}\n  window: {{window: 3}}\noptim:\n  lr: 0.01\n  batch_size: 2\n")
    cfg = assemble_config(file, {"lr": 0.5, "chunk": 7})
    assert (cfg.optim.lr, cfg.optim.batch_size, cfg.data.window.window, cfg.data.window.chunk) == (0.5, 2, 3, 7)
    assert cfg.model.lora.r == 32 and cfg.model.lora.alpha == 16 and cfg.model.lora.dropout == 0.1  # the seed's


def test_mirror_side_words_come_from_the_config_and_unmirrored_episodes_are_reported(worded_store: Path,
                                                                                       tmp_path: Path) -> None:
    file = tmp_path / "train.yaml"
    file.write_text("data:\n  augment: mirror\n  mirror:\n    side_words: [[왼쪽, 오른쪽]]\n", encoding="utf-8")
    run = tmp_path / "run"
    code, out = run_cli("train", str(worded_store), "-o", str(run), "--config", str(file), "--max-steps", "1",
                        "--window", "2", "--chunk", "4", "--hidden", "16", "--lora-r", "4", "--batch-size", "4")
    assert code == 0, out
    summary = TrainSummary.model_validate_json((run / SUMMARY_FILE).read_text())
    ids = {text: int(e) for e, text in open_store(worded_store).episodes[["episode", "instruction"]].to_numpy()}
    assert summary.unmirrored_episodes == [ids["Drive up to the bottle"]]  # the Korean one is mirrored
    notes = [line for line in out.splitlines() if "not mirrored" in line]
    assert notes == [f"augment=mirror: 1 of 3 train episodes are not mirrored, their instruction names no side word "
                     f"(data.mirror.side_words): episodes {ids['Drive up to the bottle']} (all in summary.json)"]


def train_two_processes(store: Path | str, run: Path, batching: list[str]) -> str:
    """`vla-data train` as 2 processes (torch.distributed.run, gloo on CPU), 4 steps; what it printed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pipelines.cli",
           "train", str(store), "-o", str(run), "--max-steps", "4", "--window", "2", "--chunk", "4",
           "--hidden", "16", "--lora-r", "4", "--batch-size", "4", "--val-every", "2", "--save-every", "2", *batching]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = TrainSummary.model_validate_json((run / SUMMARY_FILE).read_text())
    assert summary.processes == 2 and summary.ranks_identical and summary.steps == 4
    steps = [json.loads(line)["step"] for line in (run / LOG_FILE).read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: no step logged twice
    assert done.stdout.count("trained 4 steps") == 1
    assert not list(run.glob(".checkpoint-*")) and ckpt.load_meta(run / "checkpoint-4").step == 4
    return done.stdout


@pytest.fixture(scope="module")
def two_process_run(learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ddp") / "run"
    train_two_processes(learn_store, run, [])
    return run


def test_two_processes_hold_identical_weights_and_only_rank_0_writes(two_process_run: Path) -> None:
    assert ckpt.load_meta(two_process_run / "checkpoint-4").step == 4  # and the rest, asserted as it ran


def test_two_processes_with_a_discrete_head_and_segment_batches_hold_identical_weights(learn_store: Path,
                                                                                     tmp_path: Path) -> None:
    train_two_processes(learn_store, tmp_path / "ddp", ["--batching", "segments", "--segment-length", "2",
                                                        "--head", "discrete"])
    meta = ckpt.load_meta(tmp_path / "ddp" / "checkpoint-4")
    assert meta.train_config.model.head.value == "discrete" and meta.action_levels == [[0.0, 1.15], [-1.15, 0.0, 1.15]]


@pytest.fixture(scope="module")
def learn_store_on_s3(learn_store: Path, s3_server: dict[str, str]) -> str:
    """The learn store built again onto the test S3 server: the same episodes, the same options."""
    import s3fs

    bucket = "learn-store"
    s3fs.S3FileSystem().mkdir(bucket)
    url = f"s3://{bucket}/fleet/learn.zarr"
    build_store([learn_store.parent / "raw"], url, LEARN_BUILD, RecorderSettings())
    return url


def test_two_processes_train_from_a_store_on_s3_exactly_as_from_the_folder(two_process_run: Path,
                                                                            learn_store_on_s3: str,
                                                                            learn_store: Path, tmp_path: Path) -> None:
    """Both ranks read the one s3:// URL (the AWS variables find the server, as on a cluster); the checkpoint
    holds exactly the weights of the same run on the folder store, and eval on the URL scores as on the folder."""
    run = tmp_path / "ddp-s3"
    train_two_processes(learn_store_on_s3, run, [])
    trained = sorted(p.name for p in (run / "checkpoint-4").glob("*.safetensors"))
    assert trained and trained == sorted(p.name for p in (two_process_run / "checkpoint-4").glob("*.safetensors"))
    for name in trained:
        here, there = load_file(two_process_run / "checkpoint-4" / name), load_file(run / "checkpoint-4" / name)
        assert here.keys() == there.keys() and all(torch.equal(here[k], there[k]) for k in here)
    pinned = f"{learn_store_on_s3}@{open_store(learn_store_on_s3).version}"
    assert TrainConfig.model_validate_json((run / CONFIG_FILE).read_text()).data.store == pinned
    reports = {}
    for name, store in (("s3", learn_store_on_s3), ("folder", str(learn_store))):  # in process: no figures
        reports[name] = evaluate_checkpoint(run, store, EvalOptions(), progress=False)[0].model_dump(mode="json")
        assert reports[name].pop("store") == store and reports[name]["n_anchors"] > 0
        scored = reports[name].pop("data")  # the same data under two names (their manifests' times differ)
        assert scored["store"] == (store if "://" in store else str(Path(store).resolve()))
        reports[name].pop("changed_since_trained")
    assert reports["s3"] == reports["folder"]


def test_tiny_model_learns_the_synthetic_task(learn_store: Path, trained_run: Path) -> None:
    """Val MAE (physical units, every unmasked entry of every window step) below 60% of the train-mean action.
    Segment batches compute the same loss and gradients (test_segments.py); how fast they learn at equal frames
    per step is measured in benchmarks/learning.py (a learning run here costs the suite 25-40 s)."""
    policy, meta = load_policy(trained_run)
    ds = WindowDataset(learn_store, "val", WindowSpec(window=2, chunk=4))
    mae, base = window_mae(policy, ds, np.array([c.mean for c in meta.stats.action], np.float32))
    assert mae < 0.6 * base, f"val MAE {mae:.3f} vs train-mean baseline {base:.3f}"


def test_a_store_of_another_image_size_is_refused_unless_resizing_on_the_device(learn_store: Path, tmp_path: Path) -> None:
    """The store's size and the backbone's input size have one owner: the store, built at the backbone's size."""
    small = tmp_path / "s48.zarr"
    options = BuildOptions(preprocessing=Preprocessing(image_size=48), splits=SplitConfig(val_ratio=0.25))
    build_store([learn_store.parent / "raw"], small, options, RecorderSettings())
    base = ["train", str(small), "--max-steps", "1", "--window", "2", "--chunk", "2", "--hidden", "16", "--lora-r", "2"]
    code, out = run_cli(*base, "-o", str(tmp_path / "refused"))
    assert code == 1 and "the store's frames are 48x48, the backbone tiny-random reads 56x56" in out
    assert "--image-size 56" in out and "--resize-on-device" in out and not (tmp_path / "refused").exists()
    code, out = run_cli(*base, "-o", str(tmp_path / "resized"), "--resize-on-device")
    assert code == 0, out
    meta = ckpt.load_meta(ckpt.resolve(tmp_path / "resized"))
    assert meta.train_config.model.resize_on_device and meta.preprocessing.image_size == 48


def test_adapter_weights_save_and_load_through_peft_also_under_the_old_names() -> None:
    from vla_model.backbone import build_tiny_random
    from vla_model.loading import load_trained
    from vla_model.policy import VLAPolicy

    config = ModelConfig(hidden=16)
    trained, fresh, old_named = (VLAPolicy(build_tiny_random(), config, 2, 2) for _ in range(3))
    with torch.no_grad():
        for name, p in trained.backbone.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p))
    saved = trained.adapter_state()
    assert saved and all(".default." not in n for n in saved)  # peft's own names
    load_trained(fresh, saved, trained.head_state())
    before_peft = {n: p.detach() for n, p in trained.backbone.named_parameters() if "lora_" in n}  # checkpoint format 2
    assert all(".default." in n for n in before_peft)
    load_trained(old_named, before_peft, trained.head_state())
    for loaded in (fresh, old_named):
        got = loaded.adapter_state()
        assert got.keys() == saved.keys() and all(torch.equal(got[n], saved[n]) for n in saved)
