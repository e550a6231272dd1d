"""Benchmark `vla-data build-splits --workers 2` against a single-process h5py-read-and-resize loop.

Reproduce: `make bench` or `.venv/bin/python benchmarks/build.py [--episodes 40 --image-size 720x1280]`.
Both sides resize every frame to 224x224 with the same resizer (vla_data.resize, squash, area). The
baseline only reads and resizes (it writes nothing); build-splits also validates, hashes the sources,
compresses and writes the store, checksums it and computes stats. The page cache is warmed first; each
variant's best of --repeats runs is reported. Target: build-splits --workers 2 >= 1.5x the baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
from common import EPISODES, best_of, synthetic_episodes

from vla_data.build import build_store
from schemas import RecorderSettings
from schemas.store import BuildOptions, Preprocessing
from vla_data.resize import resize_frame


def baseline(files: list[Path], pre: Preprocessing) -> int:
    """Read each frame with h5py and resize it, one process; the frames done."""
    n = 0
    for path in files:
        with h5py.File(path, "r") as f:
            frames = f["images"]
            for i in range(frames.shape[0]):
                resize_frame(frames[i], pre)
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--image-size", default="720x1280", help="source frames, HxW")
    parser.add_argument("--data", type=Path, default=EPISODES)
    parser.add_argument("--out", type=Path, default=Path("bench-out/build.zarr"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    files, height, width = synthetic_episodes(args.data, args.episodes, args.image_size)
    pre = Preprocessing(image_size=224)
    settings = RecorderSettings()
    frames = baseline(files, pre)  # also warms the page cache for every variant alike

    def build(workers: int) -> None:
        options = BuildOptions(preprocessing=pre, workers=workers, overwrite=True)
        build_store([args.data], args.out, options, settings)

    variants = {
        "baseline: h5py read + resize, 1 process": lambda: baseline(files, pre),
        "build-splits --workers 1": lambda: build(1),
        "build-splits --workers 2": lambda: build(2),
    }
    seconds = {name: best_of(args.repeats, fn) for name, fn in variants.items()}
    source_mb = sum(p.stat().st_size for p in files) / 1e6
    store_mb = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 1e6
    base = seconds["baseline: h5py read + resize, 1 process"]

    print(f"\n{len(files)} episodes, {frames} frames of {height}x{width} -> 224x224, best of {args.repeats}")
    print(f"store {store_mb:.1f} MB vs sources {source_mb:.1f} MB ({store_mb / source_mb:.1%} of the source size)")
    print("| variant | seconds | frames/s | speed-up vs baseline |")
    print("|---|---:|---:|---:|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.3f} | {frames / s:.0f} | {base / s:.2f}x |")
    ratio = base / seconds["build-splits --workers 2"]
    print(f"target build-splits --workers 2: >= 1.5x, measured {ratio:.2f}x: {'met' if ratio >= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
