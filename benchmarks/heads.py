"""Regression against discrete action head (`--head`), on the demo's task: which one to make the default.

Reproduce: `.venv/bin/python benchmarks/heads.py` (6 trainings of 300 steps, 20-40 s each on 2 idle
CPU cores, many times that on shared ones: the `train s` column is not a head's speed unless the cores were idle);
the longer budget is the same script with `--steps 3000 --every 250`. The figures are deterministic per seed.
The store is the demo's (Makefile `demo`): `make-synthetic --episodes 24 --image-size 120x214 --seed 0`, then
`build-splits --image-size 56 --workers 2` (val split by the default ratio), built once into bench-out/heads/.
Each head is trained as the demo trains (`--model tiny-random --max-steps 300 --window 4 --chunk 4
--batch-size 16 --lr 2e-3 --hidden 64 --lora-r 8 --augment mirror`, every other setting its default; the
discrete head with its defaults: the teleop levels, expected-value readout) for each seed (optim.seed), in
process (``vla_model.trainer.train``, fp32), a checkpoint every --every steps. Every checkpoint is scored on
the val split by ``pipelines.evaluate.evaluate_checkpoint`` with the default ``EvalOptions`` (tolerance 0.1,
dead band 0.05), physical units. Per run, at the last step: success@0.1 of the first action and of the whole
chunk, MAE and direction accuracy of the first action and MAE of the chunk (means over the channels); the first
checkpoint whose first-action success reaches 0.8 ('never' if none); the training loss at the first and the
last logged step (a head that does not learn shows here). Per head: the mean and the worst over the seeds;
then the train-mean, most-common-action and zero-velocity baselines on the same anchors. The task's ceiling: the
scripted operator's rule applied to the true state gives every recorded action (each one is that rule's output,
vla_data.synthetic.episodes.simulate), so a perfect perceiver scores 1.000; the practical ceiling printed is the
best checkpoint of any run (the `best` column: the highest first-action success over a run's checkpoints).
Goal: success@0.1 (first action) >= 0.8 at the last step on every seed: PASS or MISS per head.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.evaluate import evaluate_checkpoint
from schemas import RecorderSettings
from schemas.evaluation import EvalOptions, EvalReport, Horizon, MetricSet, Predictor
from schemas.store import BuildOptions, Preprocessing
from schemas.synthetic import SyntheticConfig
from schemas.train import LOG_FILE, TrainConfig
from vla_data.build.job import build_store
from vla_data.synthetic.episodes import make_synthetic
from vla_model import checkpoint as ckpt
from vla_model.trainer import train

GOAL = 0.8  # success@0.1 of the first action, at the last step, on every seed
COLUMNS = ["success first", "success chunk", "MAE first", "MAE chunk", "direction first"]


def demo_store(root: Path) -> Path:
    """The demo's store (Makefile `demo`, before its later edits), built once."""
    store = root / "dataset.zarr"
    if not store.exists():
        make_synthetic(root / "raw", SyntheticConfig(episodes=24, height=120, width=214, seed=0))
        build_store([root / "raw"], store, BuildOptions(preprocessing=Preprocessing(image_size=56), workers=2),
                    RecorderSettings())
    return store


def figures(report: EvalReport, who: Predictor) -> dict[str, float]:
    """The five figures of one predictor: success, MAE (mean over channels), direction accuracy (first action)."""
    first, chunk = report.overall[Horizon.first][who], report.overall[Horizon.chunk][who]

    def mean(metrics: MetricSet, field: str) -> float:
        return float(np.mean([v for v in getattr(metrics, field) if v is not None]))

    return dict(zip(COLUMNS, [first.success, chunk.success, mean(first, "mae"), mean(chunk, "mae"),
                              mean(first, "direction_accuracy")], strict=True))


def run_one(store: Path, run: Path, head: str, seed: int, steps: int, every: int) -> dict:
    """Train one head with one seed, score every checkpoint; the last step's figures and the curve."""
    shutil.rmtree(run, ignore_errors=True)
    config = TrainConfig.model_validate({
        "data": {"store": str(store), "window": {"window": 4, "chunk": 4}, "augment": "mirror"},
        "model": {"source": "tiny-random", "head": head, "hidden": 64, "lora": {"r": 8}},
        "optim": {"lr": 2e-3, "batch_size": 16, "max_steps": steps, "seed": seed},
        "log": {"val_every": steps, "save_every": every, "keep_last": steps // every + 1},
    })
    start = time.perf_counter()
    train(config, run)
    seconds = time.perf_counter() - start
    curve, last = {}, None
    for folder in ckpt.checkpoints(run):
        last, _ = evaluate_checkpoint(folder, store, EvalOptions(), progress=False)
        curve[last.step] = last.overall[Horizon.first][Predictor.policy].success
    losses = [r["loss"] for r in map(json.loads, (run / LOG_FILE).read_text().splitlines()) if "loss" in r]
    reached = next((s for s, v in sorted(curve.items()) if v is not None and v >= GOAL), None)
    scored = time.perf_counter() - start - seconds
    print(f"  {head} seed {seed}: {steps} steps in {seconds:.0f} s, scored in {scored:.0f} s; success first by step: "
          + " ".join(f"{s}:{v:.2f}" for s, v in sorted(curve.items())), flush=True)
    return {"head": head, "seed": seed, "step": last.step, "train_s": seconds, "reached": reached, "curve": curve,
            "loss": (losses[0], losses[-1]), "policy": figures(last, Predictor.policy),
            "train_mean": figures(last, Predictor.train_mean), "most_common": figures(last, Predictor.most_common),
            "zero": figures(last, Predictor.zero_velocity),
            "anchors": last.n_anchors, "episodes": last.n_episodes}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def row(label: str, seed: str, values: dict[str, float], reached: str, best: str, loss: str, seconds: str) -> str:
    cells = " | ".join(fmt(values[c]) for c in COLUMNS)
    return f"| {label} | {seed} | {cells} | {reached} | {best} | {loss} | {seconds} |"


def best(run: dict) -> tuple[float, int]:
    """A run's best first-action success over its checkpoints, and the step (the first on a tie)."""
    step, value = max(sorted((int(s), v) for s, v in run["curve"].items()), key=lambda sv: sv[1])
    return value, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/heads"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50, help="steps between checkpoints (each one evaluated)")
    parser.add_argument("--seeds", default="0,1,2", help="optim.seed of each run, comma-separated")
    parser.add_argument("--heads", default="regression,discrete", help="comma-separated")
    args = parser.parse_args()
    seeds, heads = [int(s) for s in args.seeds.split(",")], args.heads.split(",")
    torch.set_num_threads(2)
    started = time.perf_counter()
    store = demo_store(args.out)
    results = [run_one(store, args.out / f"run-{head}-{seed}", head, seed, args.steps, args.every)
               for head in heads for seed in seeds]
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    r0 = results[0]
    print(f"\nThe demo's task: {r0['episodes']} val episodes, {r0['anchors']} anchors; tiny-random, W=4, K=4, "
          f"{args.steps} steps, seeds {args.seeds}; figures at step {r0['step']}, physical units, tolerance 0.1\n")
    print("| head | seed | success@0.1 first | success@0.1 chunk | MAE first | MAE chunk | direction acc. first "
          f"| first step with success first >= {GOAL} | best success first (step) | loss first -> last logged | train s |")
    print("|---|---|" + "---:|" * 9)
    summary = {}
    for head in heads:
        runs = [r for r in results if r["head"] == head]
        for r in runs:
            value, step = best(r)
            print(row(head, str(r["seed"]), r["policy"], str(r["reached"] or "never"), f"{value:.3f} ({step})",
                      f"{r['loss'][0]:.3f} -> {r['loss'][1]:.3f}", f"{r['train_s']:.0f}"))
        table = {c: [r["policy"][c] for r in runs] for c in COLUMNS}
        mean = {c: float(np.mean(v)) for c, v in table.items()}
        worst = {c: float(max(v) if c.startswith("MAE") else min(v)) for c, v in table.items()}
        steps = [r["reached"] for r in runs]
        hit = [s for s in steps if s is not None]
        print(row(head, "**mean**", mean, f"{np.mean(hit):.0f} ({len(hit)}/{len(runs)} reached)" if hit else "never",
                  f"{np.mean([best(r)[0] for r in runs]):.3f}", "", f"{np.mean([r['train_s'] for r in runs]):.0f}"))
        print(row(head, "**worst**", worst, "never" if None in steps else str(max(steps)),
                  f"{min(best(r)[0] for r in runs):.3f}", "", ""))
        summary[head] = (mean, worst)
    for label, key in (("train-mean baseline", "train_mean"), ("most-common-action baseline", "most_common"),
                       ("zero-velocity baseline", "zero")):
        print(row(label, "-", r0[key], "-", "", "", ""))
    top = max(results, key=lambda r: best(r)[0])
    print(f"\nceiling: the operator's rule on the true state 1.000 (by construction); the best checkpoint of any run "
          f"{best(top)[0]:.3f} ({top['head']} seed {top['seed']}, step {best(top)[1]})")

    print()
    for head, (mean, worst) in summary.items():
        verdict = "PASS" if worst["success first"] >= GOAL else "MISS"
        print(f"goal, {head}: success@0.1 (first action) >= {GOAL} at step {args.steps} on every seed: {verdict} "
              f"(worst {worst['success first']:.3f}, mean {mean['success first']:.3f}; chunk worst "
              f"{worst['success chunk']:.3f})")
    if len(summary) == 2:
        (a, (ma, wa)), (b, (mb, wb)) = summary.items()
        gap = {c: mb[c] - ma[c] for c in COLUMNS}
        print(f"{b} - {a}: success first mean {gap['success first']:+.3f}, worst "
              f"{wb['success first'] - wa['success first']:+.3f}; success chunk mean {gap['success chunk']:+.3f}; "
              f"MAE first mean {gap['MAE first']:+.3f}")
    print(f"\nwall time {time.perf_counter() - started:.0f} s; each run's figures, curve: {args.out / 'results.json'}")
    print(f"reproduce: .venv/bin/python benchmarks/heads.py --steps {args.steps} --every "
          f"{args.every} --seeds {args.seeds} --heads {args.heads}   (the longer budget: --steps 3000 --every 250)")


if __name__ == "__main__":
    main()
