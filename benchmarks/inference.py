"""Steps per second of a robot loop: ``PolicyRunner`` against recomputing the whole window at every step.

Reproduce: `.venv/bin/python benchmarks/inference.py` (add `--full-size` on a CUDA machine).
Every variant takes one raw 720x1280 BGR camera frame per step and returns the (K, A) chunk in physical
units, W=8, K=10:
  - recompute the window (the baseline): ``Policy.predict`` on the last W raw frames, which preprocesses
    them and runs the backbone on all W, as an inference script without state does;
  - recompute, frames cached: a stronger baseline that keeps the last W preprocessed frames and runs the
    backbone on all W each step (it isolates what caching the features saves);
  - PolicyRunner: keeps the last W frame features, so it preprocesses and runs the backbone on the new
    frame only.
Models: tiny-random on CPU; with --full-size, the full Kosmos-2 architecture (random weights: nothing is
downloaded) on the GPU, fp32. LoRA is merged for inference in every variant (``Policy`` does it). The
same random frames go through every variant. Target: PolicyRunner >= 3x the baseline at W=8.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import numpy as np
import torch
from transformers import Kosmos2Config, Kosmos2Model

from schemas.store import ActionSelection, ChannelStats, NormStats, Preprocessing
from schemas.train import BackboneSpec, CheckpointMeta, ModelConfig, TrainConfig
from vla_model.backbone import Backbone, build_tiny_random, tiny_tokenizer
from vla_model.policy import VLAPolicy
from vla_model.runtime import Policy

W, K, A = 8, 10, 2
INSTRUCTION = "Navigate around obstacles and reach the front of the beverage bottle on the left"


def bench_policy(full_size: bool, device: str) -> Policy:
    """A ``Policy`` as ``from_checkpoint`` gives one, around an untrained model (speed does not depend on weights)."""
    if full_size:
        with torch.device(device):
            backbone = Backbone(Kosmos2Model(Kosmos2Config()), tiny_tokenizer(), "random full-size")
    else:
        backbone = build_tiny_random()
    model = VLAPolicy(backbone, ModelConfig(), action_dim=A, chunk=K).to(device)
    channel = ChannelStats(count=1, mean=0.0, std=1.0, min=-1.0, max=1.0, q01=-1.0, q99=1.0)
    meta = CheckpointMeta(
        tool_version="bench", step=0, val_loss=None,
        train_config=TrainConfig.model_validate({"data": {"store": "-", "window": {"window": W, "chunk": K}}}),
        backbone=BackboneSpec(source=backbone.source, config={}),
        preprocessing=Preprocessing(image_size=backbone.image_size),
        actions=ActionSelection(channels=[0, 1], names=["linear_x", "linear_y"]),
        stats=NormStats(action=[channel] * A, image_mean=[0.5] * 3, image_std=[0.25] * 3), files={},
    )
    return Policy(model, meta)


def recompute_naive(policy: Policy, frames: list[np.ndarray]) -> None:
    recent: deque[np.ndarray] = deque(maxlen=W)
    for frame in frames:
        recent.append(frame)
        policy.predict(np.stack(recent), INSTRUCTION)


def recompute_cached_frames(policy: Policy, frames: list[np.ndarray]) -> None:
    recent: deque[torch.Tensor] = deque(maxlen=W)
    for frame in frames:
        rgb = policy.prepare(frame)[0]
        recent.extend([rgb] * (W if not recent else 1))
        features = policy.features(torch.stack(tuple(recent)), INSTRUCTION)
        policy.act(features[None])


def runner_loop(policy: Policy, frames: list[np.ndarray]) -> None:
    runner = policy.runner()
    runner.reset(INSTRUCTION)
    for frame in frames:
        runner.step(frame)


def steps_per_second(fn, policy: Policy, frames: list[np.ndarray], repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn(policy, frames[:W])  # warm-up
    best = min(_timed(fn, policy, frames) for _ in range(repeats))
    return len(frames) / best


def _timed(fn, policy: Policy, frames: list[np.ndarray]) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(policy, frames)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="Frames per timed episode.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed episodes per variant (best is kept).")
    parser.add_argument("--full-size", action="store_true", help="The full Kosmos-2 architecture (needs a GPU).")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.full_size and device != "cuda":
        parser.error("--full-size needs a CUDA GPU; on CPU the tiny model is measured")
    torch.manual_seed(0)
    policy = bench_policy(args.full_size, device)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(args.steps)]

    variants = [("recompute the window (Policy.predict on the last W raw frames)", recompute_naive),
                ("recompute, frames cached (backbone on W frames per step)", recompute_cached_frames),
                ("PolicyRunner (backbone on the new frame only)", runner_loop)]
    rates = {name: steps_per_second(fn, policy, frames, args.repeats) for name, fn in variants}
    baseline, cached = rates[variants[0][0]], rates[variants[1][0]]
    model = "Kosmos-2 full-size (random), fp32" if args.full_size else "tiny-random"
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{model} on {where}; W={W}, K={K}, raw 720x1280 frames, {args.steps} steps, best of {args.repeats}")
    print("| variant | steps/s | ms/step | vs recompute the window | vs recompute, frames cached |")
    print("|---|---:|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} | {1000 / rate:.1f} | {rate / baseline:.2f}x | {rate / cached:.2f}x |")
    ratio = rates[variants[2][0]] / baseline
    print(f"target >= 3x at W={W}: {'met' if ratio >= 3 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
