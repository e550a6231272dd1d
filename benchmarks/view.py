"""Benchmark `vla-data view`: logging speed (frames/s) of a 40-episode store into an .rrd file, with JPEG frames
(the default) and raw frames, and the recording's size per frame.

Reproduce: `make bench` or `.venv/bin/python benchmarks/view.py [--episodes 40 --image-size 720x1280]`. The
store is built once from the other benchmarks' synthetic 1-camera episodes (bench-out/validate-episodes) at
224x224 into bench-out/view.zarr; the rows run in turn, --repeats rounds, each one's best reported. The raw
row is the baseline: frames/s counts every logged frame, store reading included.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import best_of_interleaved, episodes_dir, synthetic_episodes

from pipelines.view import Sink, episodes_into, record, store_views
from schemas.store import BuildOptions, Preprocessing
from schemas.view import ImageEncoding, ViewOptions
from vla_data.build.job import build_store
from vla_data.store.reader import open_store
from vla_data.synthetic.episodes import camera_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--image-size", default="720x1280", help="source frames, HxW")
    parser.add_argument("--store", type=Path, default=Path("bench-out/view.zarr"))
    parser.add_argument("--out", type=Path, default=Path("bench-out/view"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = episodes_dir(1)
    synthetic_episodes(data, args.episodes, args.image_size, cameras=1)
    build_store([data], args.store, BuildOptions(preprocessing=Preprocessing(image_size=224), workers=2),
                camera_settings(1))
    store = open_store(args.store)
    args.out.mkdir(parents=True, exist_ok=True)
    variants = {f"{encoding.value}": ViewOptions(max_episodes=args.episodes, images=encoding)
                for encoding in (ImageEncoding.raw, ImageEncoding.jpeg)}
    frames: dict[str, int] = {}

    def log(name: str) -> None:
        sink = Sink(save=args.out / f"{name}.rrd")
        frames[name] = record(sink, name, episodes_into(store_views(store, variants[name], None), variants[name]))[1]

    seconds = best_of_interleaved(args.repeats, {name: (lambda name=name: log(name)) for name in variants})
    print(f"\n{len(store.episodes)} episodes, {store.manifest.n_frames} frames of 224x224, best of {args.repeats}")
    print("| frames | seconds | frames/s | .rrd MB | KB per frame | x raw |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in variants:
        size = (args.out / f"{name}.rrd").stat().st_size
        rate = frames[name] / seconds[name]
        print(f"| {name}{' (jpeg quality 90)' if name == 'jpeg' else ''} | {seconds[name]:.2f} | {rate:.0f} | "
              f"{size / 1e6:.1f} | {size / frames[name] / 1e3:.1f} | {seconds['raw'] / seconds[name]:.2f}x |")


if __name__ == "__main__":
    main()
