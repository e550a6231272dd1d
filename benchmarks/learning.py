"""Learning, per-window against segment batches, at equal frames per step: val MAE against samples seen and
against wall-clock time.

Reproduce: `.venv/bin/python benchmarks/learning.py` (about 3 minutes on 2 CPU cores). The learning test's
task and model (tests/conftest.py: 64 synthetic episodes, 48x80 stored at 56 px, a quarter val; tiny-random,
W=2, K=4, mirror, lr 2e-3, 800 steps): per-window batches of 16 samples (32 frames through the backbone per
step) against segment batches of about 32 frames per step, for each segment length L (default 2, 4 and 7:
11 x 2, 6 x 4 and 4 x 7 anchors). Every 100 steps (--every) a checkpoint; afterwards each checkpoint's
val MAE (physical units, every unmasked entry of every window step, as tests/test_train.py measures it) against the train-mean baseline, with the samples seen and
the training time at that step (log.jsonl). Goal: segment batches reach the learning test's bound (val MAE
< 0.6x the baseline) in no more wall-clock time than per-window batches. Writes the two curves to
bench-out/learning.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from schemas import RecorderSettings
from schemas.sample import WindowSpec
from schemas.store import BuildOptions, Preprocessing, SplitConfig
from schemas.synthetic import SyntheticConfig
from schemas.train import TrainConfig
from vla_data.build.job import build_store
from vla_data.samples.dataset import WindowDataset
from vla_data.synthetic.episodes import make_synthetic
from vla_model import checkpoint as ckpt
from vla_model.loading import load_policy
from vla_model.trainer import LOG_FILE, train, window_mae

SPEC = {"window": 2, "chunk": 4}
BOUND = 0.6  # the learning test's: val MAE below 0.6x the train-mean baseline
FRAMES = 32  # through the backbone per step: 16 per-window samples of W=2


def runs(lengths: list[int]) -> dict[str, tuple[dict, int]]:
    """label -> (batching, batch size in samples): per-window batches of FRAMES / W samples, and for each
    segment length L the number of segments whose L + W - 1 frames come closest to FRAMES."""
    w = SPEC["window"]
    out = {f"per-window, {FRAMES // w} samples": ({"mode": "windows"}, FRAMES // w)}
    for length in lengths:
        segments = max(1, round(FRAMES / (length + w - 1)))
        out[f"segments, {segments} x {length} anchors ({segments * (length + w - 1)} frames)"] = (
            {"mode": "segments", "segment_length": length}, segments * length)
    return out


def learn_store(root: Path) -> Path:
    """The learning test's store (tests/conftest.py, ``learn_store``), built once."""
    store = root / "ds.zarr"
    if not store.exists():
        make_synthetic(root / "raw", SyntheticConfig(episodes=64, height=48, width=80, seed=11))
        options = BuildOptions(preprocessing=Preprocessing(image_size=56), splits=SplitConfig(val_ratio=0.25))
        build_store([root / "raw"], store, options, RecorderSettings())
    return store


def val_mae(run: Path, store: Path) -> dict[int, float]:
    """Each checkpoint's val MAE as a fraction of the train-mean baseline's, by step."""
    ds = WindowDataset(store, "val", WindowSpec(**SPEC))
    out = {}
    for folder in ckpt.checkpoints(run):
        policy, meta = load_policy(folder)
        mae, base = window_mae(policy, ds, np.array([c.mean for c in meta.stats.action], np.float32))
        out[meta.step] = mae / base
    return out


def run_one(store: Path, run: Path, batching: dict, batch: int, steps: int, every: int) -> list[dict]:
    """Train, then one row per checkpoint: step, samples seen, training seconds, val MAE / baseline."""
    shutil.rmtree(run, ignore_errors=True)
    config = TrainConfig.model_validate({
        "data": {"store": str(store), "window": SPEC, "augment": "mirror", "batching": batching},
        "model": {"hidden": 64, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "optim": {"lr": 2e-3, "batch_size": batch, "max_steps": steps, "warmup_steps": 10},
        "log": {"log_every": every, "val_every": steps, "save_every": every, "keep_last": steps // every + 1},
    })
    start = time.perf_counter()
    train(config, run)
    total = time.perf_counter() - start
    logged = {r["step"]: r for r in map(json.loads, (run / LOG_FILE).read_text().splitlines())}
    maes = val_mae(run, store)
    rows = [{"step": s, "samples": logged[s]["samples"], "seconds": logged[s]["elapsed_s"], "mae": m}
            for s, m in sorted(maes.items())]
    print(f"  {run.name}: {steps} steps in {total:.0f} s", flush=True)
    return rows


def plot(results: dict[str, list[dict]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    by_samples, by_time = fig.subplots(1, 2)
    for label, rows in results.items():
        mae = [r["mae"] for r in rows]
        by_samples.plot([r["samples"] for r in rows], mae, marker="o", label=label)
        by_time.plot([r["seconds"] for r in rows], mae, marker="o", label=label)
    for ax, xlabel in ((by_samples, "samples seen"), (by_time, "training time (s, 2 CPU cores)")):
        ax.axhline(BOUND, color="grey", linestyle="--", label="the learning test's bound")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("val MAE / train-mean baseline")
        ax.grid(alpha=0.3)
    by_samples.legend()
    fig.suptitle("tiny-random, W=2, K=4, 32 frames per step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/learning"))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=100, help="steps between checkpoints (points of the curves)")
    parser.add_argument("--segment-lengths", type=int, nargs="+", default=[2, 4, 7])
    args = parser.parse_args()
    torch.set_num_threads(2)
    store = learn_store(args.out)
    results = {label: run_one(store, args.out / f"run-{i}", batching, batch, args.steps, args.every)
               for i, (label, (batching, batch)) in enumerate(runs(args.segment_lengths).items())}
    print("\n| batching | step | samples seen | training s | val MAE / baseline |")
    print("|---|---:|---:|---:|---:|")
    for label, rows in results.items():
        for r in rows:
            print(f"| {label} | {r['step']} | {r['samples']} | {r['seconds']:.0f} | {r['mae']:.3f} |")
    reached = {label: next((r for r in rows if r["mae"] < BOUND), None) for label, rows in results.items()}
    for label, r in reached.items():
        print(f"{label}: " + (f"below {BOUND}x at step {r['step']}, {r['samples']} samples, {r['seconds']:.0f} s"
                              if r else f"never below {BOUND}x in {args.steps} steps"))
    (_, w), *segments = reached.items()
    for label, s in segments:
        met = s is not None and (w is None or s["seconds"] <= w["seconds"])
        print(f"goal, {label}: the bound in no more time than per-window batches: {'met' if met else 'NOT met'}")
    plot(results, args.out.parent / "learning.png")
    print(f"wrote {args.out.parent / 'learning.png'}")


if __name__ == "__main__":
    main()
