"""Training step time, samples/s and peak memory of the policy, and the size of a full-size checkpoint.

Reproduce: `.venv/bin/python benchmarks/train_gpu.py` (on a CUDA machine for the full-size figures).
With CUDA: the full-size Kosmos-2 architecture (microsoft/kosmos-2-patch14-224's config, random weights,
nothing downloaded), LoRA r=32, W=8, K=10, 224x224, bf16 autocast, gradient checkpointing off and on;
for each, the largest batch that fits (doubling from 1) and its step time. Without CUDA: the same loop
with the tiny-random model on CPU. The seed team's figure, for comparison: RTX A5000 (24 GB), batch 1,
window 4, accumulation 8, fp16, about 0.4 s per micro-step; fp32 ran out of memory at batch 2, window 8.
Target: batch 8 at W=8 in under 24 GB. The checkpoint size (LoRA r=32 + heads, safetensors fp32) is
computed from the full-size shapes on the meta device, so it needs no GPU and no download.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import Kosmos2Config, Kosmos2Model

from schemas.train import ModelConfig
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
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
