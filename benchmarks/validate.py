"""Benchmark `vla-data validate` against a plain h5py read of every dataset, measured in the same run.

Reproduce: `make bench` or `.venv/bin/python benchmarks/validate.py [--episodes 40 --image-size 720x1280]`.
The episodes are generated once into --data and reused. Before timing, every file is read once untimed so
the OS page cache is equally warm for all variants; each variant's best of --repeats runs is reported.
Targets: default pass >= 20x the baseline, deep pass with 2 workers >= 1.5x the baseline.

Then the same episodes as ROS 2 bags (the four sets `benchmarks/build.py` writes into --bags-dir: sqlite3 and
MCAP, Image bgr8 and CompressedImage jpeg; written here when missing), warmed, each validated with the default
and the deep pass, 1 process, beside the HDF5 files' (`--no-bags` leaves them out). No goal is set: the default
pass of a bag reads every message of its camera topics (a header stamp is inside the message, and MCAP chunks
are read whole) but decodes and digests only the first picture, so it is bound by reading the bag's bytes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import h5py
from build import BAG_SETS, bag_set, warm_bags
from common import EPISODES, best_of, synthetic_episodes

from schemas import RecorderSettings, ValidateOptions
from vla_data.validation.checks import validate


def baseline(files: list[Path]) -> None:
    """What a naive check does: open each file and read every dataset in full, in one process."""
    def read(name: str, obj: h5py.HLObject) -> None:  # returning None keeps visititems going
        if isinstance(obj, h5py.Dataset):
            obj[()]

    for path in files:
        with h5py.File(path, "r") as f:
            f.visititems(read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--image-size", default="720x1280", help="HxW")
    parser.add_argument("--data", type=Path, default=EPISODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bags-dir", type=Path, default=Path("bench-out/build-bags"))
    parser.add_argument("--no-bags", dest="bags", action="store_false", help="leave the bag sets out")
    args = parser.parse_args()
    files, height, width = synthetic_episodes(args.data, args.episodes, args.image_size)
    baseline(files)  # warm the page cache for every variant alike

    settings = RecorderSettings()
    variants: dict[str, Callable[[], object]] = {
        "baseline: h5py read of every dataset": lambda: baseline(files),
        "validate (default pass)": lambda: validate(files, settings, ValidateOptions(), str(args.data)),
        "validate --deep --workers 2": lambda: validate(
            files, settings, ValidateOptions(deep=True, workers=2), str(args.data)
        ),
    }
    seconds = {name: best_of(args.repeats, fn) for name, fn in variants.items()}
    report = validate(files, settings, ValidateOptions(), str(args.data))
    frames = report.summary.frames
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    base = seconds["baseline: h5py read of every dataset"]

    print(f"\n{len(files)} episodes, {frames} frames of {height}x{width}, {size_mb:.0f} MB on disk, best of {args.repeats}")
    print("| variant | seconds | files/s | frames/s | speed-up vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.3f} | {len(files) / s:.1f} | {frames / s:.0f} | {base / s:.1f}x |")
    for name, target in (("validate (default pass)", 20.0), ("validate --deep --workers 2", 1.5)):
        ratio = base / seconds[name]
        print(f"target {name}: >= {target:g}x, measured {ratio:.1f}x: {'met' if ratio >= target else 'NOT met'}")
    if args.bags:
        validate_bags(args, files, (height, width), settings, seconds["validate (default pass)"], frames)


def validate_bags(args: argparse.Namespace, files: list[Path], size: tuple[int, int], settings: RecorderSettings,
                  hdf5_seconds: float, frames: int) -> None:
    """The bag table: each bag set's default and deep pass against the HDF5 default pass of the same frames."""
    rows = []
    for name, style in BAG_SETS.items():
        bags = bag_set(files, args.bags_dir / name, style, size)
        warm_bags(bags)
        for deep in (False, True):
            options = ValidateOptions(deep=deep)
            s = best_of(args.repeats, lambda: validate(bags, settings, options, str(args.bags_dir)))
            rows.append((name, "deep" if deep else "default", s))
    print(f"\nbags: the same {frames} frames, 1 process, best of {args.repeats}; HDF5 default pass {hdf5_seconds:.3f} s")
    print("| bag set | pass | seconds | frames/s | x HDF5 default pass |")
    print("|---|---|---:|---:|---:|")
    for name, kind, s in rows:
        print(f"| {name} | {kind} | {s:.3f} | {frames / s:.0f} | {hdf5_seconds / s:.2f}x |")


if __name__ == "__main__":
    main()
