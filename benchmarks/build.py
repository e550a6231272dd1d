"""Benchmark `vla-data build-splits --workers 2` against a single-process h5py-read-and-resize loop, and
the 2-camera build against the 1-camera one.

Reproduce: `make bench` or `.venv/bin/python benchmarks/build.py [--episodes 40 --image-size 720x1280
--cameras 1 2]`. Both sides resize every frame to 224x224 with the same resizer (vla_data.resize, squash,
area). The baseline only reads and resizes (it writes nothing); build-splits also validates, hashes the
sources, compresses and writes the store, checksums it and computes stats. The page cache is warmed first;
the variants run in turn (a, b, c, a, b, c) and each one's best of --repeats runs is reported. frames/s
counts source frames (episode frames, whatever the cameras); camera frames/s counts every camera's.
Target: build-splits --workers 2 >= 1.5x the baseline. With `--cameras 1 2` (the default) the same build
also runs on the 2-camera episodes (the same episodes plus a side camera, bench-out/validate-episodes-2cam).
Goal: the second camera costs at most what its frames cost, i.e. the 2-camera build time is within 10% of
twice the 1-camera per-frame cost (2-camera seconds per source frame <= 2.2x the 1-camera ones).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
from common import best_of_interleaved, episodes_dir, synthetic_episodes

from schemas.store import BuildOptions, Preprocessing
from vla_data.build import build_store
from vla_data.resize import resize_frame
from vla_data.synthetic import camera_settings

FRONT_ORDER = camera_settings(1).camera.color_order  # the colour order of `images` (BGR, the collector's)

BASELINE = "baseline: h5py read + resize, 1 process"
SECOND_CAMERA_GOAL = 2.2  # twice the 1-camera per-frame cost, plus 10%


def baseline(files: list[Path], pre: Preprocessing) -> int:
    """Read each frame with h5py and resize it, one process; the frames done."""
    n = 0
    for path in files:
        with h5py.File(path, "r") as f:
            frames = f["images"]
            for i in range(frames.shape[0]):
                resize_frame(frames[i], pre, FRONT_ORDER)
                n += 1
    return n


def warm(files: list[Path]) -> int:
    """Read every dataset of every file once, so that the page cache holds them (the other cameras too); the
    source frames (episode frames)."""
    n = 0
    for path in files:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
            n += f["images"].shape[0]
    return n


def store_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--image-size", default="720x1280", help="source frames, HxW")
    parser.add_argument("--data", type=Path, default=None,
                        help="1-camera episodes (default bench-out/validate-episodes)")
    parser.add_argument("--data-2cam", type=Path, default=None,
                        help="2-camera episodes (default bench-out/validate-episodes-2cam)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/build.zarr"))
    parser.add_argument("--out-2cam", type=Path, default=Path("bench-out/build-2cam.zarr"))
    parser.add_argument("--cameras", type=int, nargs="+", choices=(1, 2), default=[1, 2],
                        help="camera counts to build with --workers 2 (default 1 2: the second camera's cost)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = {1: args.data or episodes_dir(1), 2: args.data_2cam or episodes_dir(2)}
    outs = {1: args.out, 2: args.out_2cam}
    files, height, width = synthetic_episodes(data[1], args.episodes, args.image_size, cameras=1)
    pre = Preprocessing(image_size=224)
    frames = baseline(files, pre)  # also warms the page cache for every 1-camera variant alike
    files2, n_frames = [], {1: frames}
    if 2 in args.cameras:
        files2, _, _ = synthetic_episodes(data[2], args.episodes, args.image_size, cameras=2)
        n_frames[2] = warm(files2)

    def build(workers: int, cameras: int = 1) -> None:
        options = BuildOptions(preprocessing=pre, workers=workers, overwrite=True)
        build_store([data[cameras]], outs[cameras], options, camera_settings(cameras))

    # name -> (cameras, function); the 1-camera rows are the benchmark's rows from before the cameras
    variants = {
        BASELINE: (1, lambda: baseline(files, pre)),
        "build-splits --workers 1": (1, lambda: build(1)),
        "build-splits --workers 2": (1, lambda: build(2)),
    }
    if 2 in args.cameras:
        variants["build-splits --workers 2, 2 cameras"] = (2, lambda: build(2, 2))
    seconds = best_of_interleaved(args.repeats, {name: fn for name, (_, fn) in variants.items()})
    source_mb = sum(p.stat().st_size for p in files) / 1e6
    base = seconds[BASELINE]

    print(f"\n{len(files)} episodes, {frames} frames of {height}x{width} -> 224x224, best of {args.repeats}")
    print(f"store {store_mb(outs[1]):.1f} MB vs sources {source_mb:.1f} MB "
          f"({store_mb(outs[1]) / source_mb:.1%} of the source size)")
    if files2:
        source2_mb = sum(p.stat().st_size for p in files2) / 1e6
        print(f"2 cameras: store {store_mb(outs[2]):.1f} MB vs sources {source2_mb:.1f} MB "
              f"({store_mb(outs[2]) / source2_mb:.1%} of the source size)")
    print("| variant | cameras | seconds | frames/s | camera frames/s | speed-up vs baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (cameras, _) in variants.items():
        s, n = seconds[name], n_frames[cameras]
        print(f"| {name} | {cameras} | {s:.3f} | {n / s:.0f} | {cameras * n / s:.0f} | {base / s:.2f}x |")
    ratio = base / seconds["build-splits --workers 2"]
    print(f"target build-splits --workers 2: >= 1.5x, measured {ratio:.2f}x: {'met' if ratio >= 1.5 else 'NOT met'}")
    if files2:
        # seconds per source frame (the two folders hold the same episodes: the same frames)
        per_frame = {1: seconds["build-splits --workers 2"] / n_frames[1],
                     2: seconds["build-splits --workers 2, 2 cameras"] / n_frames[2]}
        cost = per_frame[2] / per_frame[1]
        print(f"second camera: 2-camera build {per_frame[2] * 1e3:.2f} ms per source frame = {cost:.2f}x the "
              f"1-camera {per_frame[1] * 1e3:.2f} ms; goal within 10% of twice (<= {SECOND_CAMERA_GOAL:.1f}x): "
              f"{'met' if cost <= SECOND_CAMERA_GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
