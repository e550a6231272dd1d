"""Training step time, samples/s and peak memory of the policy, and the size of a full-size checkpoint.

Reproduce: `.venv/bin/python benchmarks/train_gpu.py` (on a CUDA machine for the full-size figures).
With CUDA: the full-size Kosmos-2 architecture (microsoft/kosmos-2-patch14-224's config, random weights,
nothing downloaded), LoRA r=32, W=8, K=10, 224x224, bf16 autocast, gradient checkpointing off and on;
for each, the largest batch that fits (doubling from 1) and its step time. Without CUDA: the same loop
with the tiny-random model on CPU. The seed team's figure, for comparison: RTX A5000 (24 GB), batch 1,
window 4, accumulation 8, fp16, about 0.4 s per micro-step; fp32 ran out of memory at batch 2, window 8.
Target: batch 8 at W=8 in under 24 GB. The checkpoint size (LoRA r=32 + heads, safetensors fp32) is
computed from the full-size shapes on the meta device, so it needs no GPU and no download.

The batching table (issue 14): per-window batches against segment batches at about equal frames through
the backbone per step (64 and 128), W=8, K=10; fp32 against bf16 frozen weights (bf16 autocast), gradient
checkpointing off and on: s/step, samples/s, peak memory and, with CUDA, the share of the step the GPU runs
kernels and the share of kernel time in matmuls (torch.profiler). Goal: segments >= 3.5x samples/s on a GPU
with the full-size model, >= 2x on the CPU with tiny-random.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import Kosmos2Config, Kosmos2Model

import numpy as np

from schemas.sample import WindowSpec
from schemas.train import ModelConfig
from vla_data.samples.segments import segment_index
from vla_model.backbone import Backbone, build_tiny_random, tiny_tokenizer
from vla_model.loss import masked_huber
from vla_model.policy import VLAPolicy

W, K, A = 8, 10, 2
SEED_A5000 = "RTX A5000 24 GB (seed team): batch 1, W=4, accumulation 8, fp16, ~0.4 s/step; fp32 OOM at batch 2, W=8"


def full_size_policy(device: torch.device | str, checkpointing: bool) -> VLAPolicy:
    with torch.device(device):
        model = Kosmos2Model(Kosmos2Config())
    return VLAPolicy(Backbone(model, tiny_tokenizer(), "random full-size"), ModelConfig(gradient_checkpointing=checkpointing),
                     action_dim=A, chunk=K).to(device)


def checkpoint_mb() -> tuple[float, int, int]:
    """Size of adapter + heads of a full-size r=32 policy, from its shapes (meta device: no memory used)."""
    policy = full_size_policy("meta", False)
    lora = sum(t.numel() for t in policy.adapter_state().values())
    heads = sum(t.numel() for t in policy.head_state().values())
    return (lora + heads) * 4 / 1e6, lora, heads


def step_time(policy: VLAPolicy, batch: int, device: str, dtype: torch.dtype | None, steps: int) -> float:
    size = policy.image_size
    rgb = torch.randint(0, 256, (batch, W, 3, size, size), dtype=torch.uint8, device=device)
    target = torch.randn(batch, W, K, A, device=device)
    mask = torch.ones(batch, W, K, dtype=torch.bool, device=device)
    words = ["Navigate around obstacles and reach the front of the beverage bottle on the left"] * batch
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = masked_huber(policy(rgb, words), target, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]  # median, without the first (warm-up) step


WORDS = "Navigate around obstacles and reach the front of the beverage bottle on the left"
# (label, segments, anchors per segment): per-window batches are segments of 1 anchor, so both kinds are one loop
BATCHINGS = [("per-window, B=8", 8, 1), ("4 segments x 8 anchors", 4, 8),
             ("per-window, B=16", 16, 1), ("8 segments x 8 anchors", 8, 8)]


def batching_inputs(segments: int, length: int, size: int, device: str) -> tuple[dict, list[str], torch.Tensor]:
    """Random frames of ``segments`` runs of ``length`` consecutive anchors (past the episode start, so no pad
    frames): the unique frames, one instruction per frame, and the window table. One anchor per segment is
    a per-window batch (each of its W frames its own)."""
    ix = segment_index(np.arange(W - 1, W - 1 + length), W - 1 + length + K, WindowSpec(window=W, chunk=K))
    frames = len(ix.frames)
    windows = torch.cat([torch.from_numpy(ix.windows) + i * frames for i in range(segments)]).to(device)
    rgb = torch.randint(0, 256, (segments * frames, 3, size, size), dtype=torch.uint8, device=device)
    return {"rgb": rgb}, [WORDS] * (segments * frames), windows


def batching_step(policy: VLAPolicy, segments: int, length: int, device: str, dtype: torch.dtype | None,
                  steps: int, profile: bool) -> tuple[float, float | None, float | None]:
    """Median s/step of a training step on such a batch; with ``profile`` (CUDA) also the share of the step's
    wall time the GPU spent in kernels and the share of kernel time in matmuls."""
    rgb, words, windows = batching_inputs(segments, length, policy.image_size, device)
    b = len(windows)
    target = torch.randn(b, W, K, A, device=device)
    mask = torch.ones(b, W, K, dtype=torch.bool, device=device)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)

    def one_step() -> None:
        with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = masked_huber(policy(rgb, words, windows), target, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        one_step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = sorted(times[1:])[len(times[1:]) // 2]
    if not (profile and device == "cuda"):
        return seconds, None, None
    from torch.profiler import ProfilerActivity, profile as profiler

    with profiler(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(3):
            one_step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time for e in kernels) / 1e6  # us -> s
    matmul = sum(e.device_time for e in kernels if any(k in e.name.lower() for k in ("gemm", "matmul", "cutlass")))
    return seconds, total / wall, matmul / 1e6 / max(total, 1e-12)


def batching_table(cuda: bool, steps: int, profile: bool) -> None:
    device = "cuda" if cuda else "cpu"
    rows = []
    for checkpointing in (False, True):
        for frozen in ("fp32", "bf16"):
            dtype = torch.bfloat16 if cuda or frozen == "bf16" else None  # the CPU fp32 rows run without autocast
            for label, segments, length in BATCHINGS:
                if cuda:
                    policy = full_size_policy("cuda", checkpointing)
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                else:
                    policy = VLAPolicy(build_tiny_random(), ModelConfig(gradient_checkpointing=checkpointing), A, K)
                if frozen == "bf16":
                    policy.hold_frozen_in(torch.bfloat16)
                try:
                    seconds, busy, matmul = batching_step(policy, segments, length, device, dtype, steps, profile)
                except torch.OutOfMemoryError:
                    rows.append((checkpointing, frozen, label, segments, length, None, None, None, None))
                    continue
                peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
                rows.append((checkpointing, frozen, label, segments, length, seconds, peak, busy, matmul))
                del policy
                print(".", end="", flush=True)
    model = "Kosmos-2 full-size (random), bf16 autocast" if cuda else "tiny-random on CPU (no GPU here)"
    print(f"\nbatching: {model}, LoRA r=32, W={W}, K={K}, {torch.cuda.get_device_name() if cuda else 'CPU'}")
    print("| checkpointing | frozen weights | batching | anchors | frames | s/step | samples/s | x per-window | "
          "peak GiB | GPU busy | matmul share |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base: dict[tuple, float] = {}
    for checkpointing, frozen, label, segments, length, seconds, peak, busy, matmul in rows:
        frames = segments * (length + W - 1) if length > 1 else segments * W
        anchors = segments * length
        if seconds is None:
            print(f"| {'on' if checkpointing else 'off'} | {frozen} | {label} | {anchors} | {frames} | OOM | | | | | |")
            continue
        rate = anchors / seconds
        key = (checkpointing, frozen, BATCHINGS.index((label, segments, length)) // 2)
        if length == 1:
            base[key] = rate
        ratio = f"{rate / base[key]:.2f}x" if key in base else ""
        cells = [f"{peak:.1f}" if peak is not None else "-", f"{busy:.0%}" if busy is not None else "-",
                 f"{matmul:.0%}" if matmul is not None else "-"]
        print(f"| {'on' if checkpointing else 'off'} | {frozen} | {label} | {anchors} | {frames} | {seconds:.3f} | "
              f"{rate:.1f} | {ratio} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--only", choices=["batching", "capacity"], default=None, help="Run one of the two tables.")
    parser.add_argument("--no-profile", action="store_true", help="Skip the CUDA profile of each batching row.")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if args.only != "capacity":
        batching_table(cuda, args.steps, not args.no_profile)
    if args.only == "batching":
        return
    rows = []
    for checkpointing in (False, True):
        batch, best = 1, None
        while batch <= args.max_batch:
            if cuda:
                policy = full_size_policy("cuda", checkpointing)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            else:
                policy = VLAPolicy(build_tiny_random(), ModelConfig(gradient_checkpointing=checkpointing), A, K)
            try:
                seconds = step_time(policy, batch, device, torch.bfloat16 if cuda else None, args.steps)
            except torch.OutOfMemoryError:
                break
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            best = (batch, seconds, peak)
            rows.append((checkpointing, batch, seconds, batch / seconds, peak))
            del policy
            batch *= 2
            if not cuda and batch > 8:
                break  # the CPU run only shows the loop works; its batch limit means nothing
        print(f"gradient checkpointing {'on' if checkpointing else 'off'}: largest batch {best[0] if best else 0}",
              flush=True)

    model = "Kosmos-2 full-size (random), bf16 autocast" if cuda else "tiny-random on CPU (no GPU here), fp32"
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"\n{model}, LoRA r=32, W={W}, K={K}, {name}; {SEED_A5000}")
    print("| gradient checkpointing | batch | s/step | samples/s | peak GPU memory GiB |")
    print("|---|---:|---:|---:|---:|")
    for checkpointing, batch, seconds, rate, peak in rows:
        memory = f"{peak:.1f}" if cuda else "-"
        print(f"| {'on' if checkpointing else 'off'} | {batch} | {seconds:.3f} | {rate:.1f} | {memory} |")
    if cuda:
        fits = [r for r in rows if r[1] == 8 and r[4] < 24]
        print(f"target batch 8 at W=8 under 24 GiB: {'met' if fits else 'NOT met'}")
    mb, lora, heads = checkpoint_mb()
    print(f"full-size r=32 checkpoint weights: {mb:.1f} MB ({lora / 1e6:.1f}M LoRA + {heads / 1e6:.1f}M head parameters, "
          f"fp32 safetensors); target < 300 MB: {'met' if mb < 300 else 'NOT met'}")
    with tempfile.TemporaryDirectory() as tmp:
        from safetensors.torch import save_file

        tiny = VLAPolicy(build_tiny_random(), ModelConfig(), A, K)
        save_file({k: v.contiguous() for k, v in tiny.adapter_state().items()}, Path(tmp) / "a.safetensors")
        print(f"(tiny-random r=32 adapter file: {(Path(tmp) / 'a.safetensors').stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
