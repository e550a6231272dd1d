"""Benchmark WindowDataset + make_loader against a naive loader in the seed team's style.

Reproduce: `make bench` or `.venv/bin/python benchmarks/loader.py`. W=8, K=10, S=224, batch 32, on a store
built from the 40 synthetic 720x1280 episodes of the other benchmarks (built once into bench-out/).
Baseline, measured in the same run: for each sample open the source H5 file, read the window's frames
and resize each one, every time (on --baseline-samples samples, in store order). WindowDataset is timed
over whole epochs of the train split: the first (cold: workers start, frames decoded) and the second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from common import EPISODES, synthetic_episodes

from vla_data.build import build_store
from schemas import RecorderSettings
from schemas.sample import WindowSpec
from schemas.store import BuildOptions, Preprocessing
from vla_data.dataset import WindowDataset
from vla_data.loader import make_loader
from vla_data.resize import resize_frame
from vla_data.store import StoreError, open_store

W, K, BATCH = 8, 10, 32


def naive_samples(store: Path, n: int) -> float:
    """Samples/s of the seed-style loader: open the H5 per sample, read the window, resize every frame."""
    opened = open_store(store)
    pre = opened.manifest.preprocessing
    table = opened.episodes[opened.episodes["split"] == "train"]
    anchors = [(row.source_path, t) for row in table.itertuples() for t in range(row.n_frames)][:n]
    start = time.perf_counter()
    for path, t in anchors:
        with h5py.File(path, "r") as f:
            idx = np.maximum(np.arange(t - W + 1, t + 1), 0)
            frames = np.stack([resize_frame(f["images"][i], pre) for i in idx])
            actions = f["actions"][()]
            torch.from_numpy(frames.transpose(0, 3, 1, 2).copy()), torch.from_numpy(actions)
    return len(anchors) / (time.perf_counter() - start)


def epochs(store: Path, workers: int, memory_budget: int | None) -> tuple[float, float, bool]:
    """Samples/s of the first (cold) and second epoch through make_loader."""
    start = time.perf_counter()
    ds = WindowDataset(store, "train", WindowSpec(window=W, chunk=K), memory_budget=memory_budget)
    loader = make_loader(ds, batch_size=BATCH, workers=workers, seed=0)
    rates = []
    for _ in range(2):
        n = 0
        for batch in loader:
            n += len(batch["t"])
        rates.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
    return rates[0], rates[1], ds.frames.in_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=EPISODES)
    parser.add_argument("--store", type=Path, default=Path("bench-out/loader.zarr"))
    parser.add_argument("--baseline-samples", type=int, default=96)
    args = parser.parse_args()
    synthetic_episodes(args.data, 40, "720x1280")
    try:
        open_store(args.store)
    except StoreError:
        print(f"building {args.store} (224x224) ...", flush=True)
        options = BuildOptions(preprocessing=Preprocessing(image_size=224), workers=2, overwrite=True)
        build_store([args.data], args.store, options, RecorderSettings())
    torch.set_num_threads(1)

    base = naive_samples(args.store, args.baseline_samples)
    rows = [("baseline: open H5 + read + resize per sample", base, base)]
    for workers in (0, 2):
        for budget, label in ((None, "in memory"), (0, "LRU of episodes")):
            cold, warm, _ = epochs(args.store, workers, budget)
            rows.append((f"WindowDataset, {workers} workers, {label}", cold, warm))
    n = len(WindowDataset(args.store, "train", WindowSpec(window=W, chunk=K)))
    print(f"\nW={W} K={K} S=224 batch {BATCH}; train split {n} samples; baseline on {args.baseline_samples} samples")
    print("| loader | epoch 1 (cold) samples/s | epoch 2 samples/s | epoch 2 vs baseline |")
    print("|---|---:|---:|---:|")
    for name, cold, warm in rows:
        print(f"| {name} | {cold:.1f} | {warm:.1f} | {warm / base:.0f}x |")


if __name__ == "__main__":
    main()
