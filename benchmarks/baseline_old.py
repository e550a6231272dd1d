"""The 1-camera figures of two code trees in one session: build-splits --workers 2 and the loader (0 workers,
in memory), e.g. the code before the camera work against the current code.

Reproduce (from the repository root, with this tree on PYTHONPATH for the generation of the episodes):

    git worktree add ../bench-old e7aa221
    PYTHONPATH=. .venv/bin/python benchmarks/baseline_old.py --tree old=../bench-old --tree new=.

Each measurement runs in a fresh process whose PYTHONPATH is that tree (the child prints the vla_data it
imported), on the same 1-camera synthetic episodes (bench-out/validate-episodes, generated once by the
current tree; both trees read them alike). A child times --build-repeats builds of the episodes into its own
store (224x224, --workers 2, the store replaced each time; best kept), then runs the loader of
benchmarks/loader.py on that store: W=8, K=10, batch 32, 0 workers, frames in memory, epoch 1 (cold) and
epoch 2 of the train split. The trees run in turn, --rounds times (old, new, old, new, ...), and each
tree's best figures are reported: on a shared 2-core machine the best is the least disturbed run.
The build entry point is vla_data.build.build_store or, in code before it moved, pipelines.build_splits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import EPISODES

W, K, BATCH = 8, 10, 32
HERE = Path(__file__).resolve()


PACKAGES = ("vla_data", "pipelines", "schemas", "vla_model")


def isolate() -> None:
    """Import the project only from PYTHONPATH: drop the editable install's finder, which would otherwise
    supply any module the tree lacks (vla_data.build in code before it existed) from the installed checkout."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]


def outside(tree: Path) -> list[str]:
    """The project's modules this process imported from anywhere but ``tree`` (there should be none)."""
    return sorted(name for name, m in sys.modules.items() if name.split(".")[0] in PACKAGES
                  and getattr(m, "__file__", None) and not Path(m.__file__).resolve().is_relative_to(tree))


def child(data: Path, out: Path, build_repeats: int, tree: Path) -> dict[str, object]:
    """Run in a process whose PYTHONPATH is the tree to measure: its build and loader figures."""
    isolate()
    import torch

    import vla_data
    from schemas import RecorderSettings
    from schemas.sample import WindowSpec
    from schemas.store import BuildOptions, Preprocessing
    from vla_data.dataset import WindowDataset
    from vla_data.loader import make_loader

    try:
        from vla_data.build import build_store

        api = "vla_data.build.build_store"
    except ImportError:  # the code before the build entry point moved
        from pipelines.build_splits import build_splits as build_store

        api = "pipelines.build_splits.build_splits"
    options = BuildOptions(preprocessing=Preprocessing(image_size=224), workers=2, overwrite=True)
    builds = []
    for _ in range(build_repeats):
        start = time.perf_counter()
        manifest = build_store([data], out, options, RecorderSettings())
        builds.append(time.perf_counter() - start)

    torch.set_num_threads(1)
    start = time.perf_counter()
    ds = WindowDataset(out, "train", WindowSpec(window=W, chunk=K), memory_budget=None)
    loader = make_loader(ds, batch_size=BATCH, workers=0, seed=0)
    rates, rgb = [], None
    for _ in range(2):
        n = 0
        for batch in loader:
            n += len(batch["t"])
            if rgb is None:
                rgb = batch["rgb"]
        rates.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
    shape = {k: list(v.shape) for k, v in rgb.items()} if isinstance(rgb, dict) else list(rgb.shape)
    return {"vla_data": vla_data.__file__, "api": api, "build_s": min(builds), "builds_s": builds,
            "frames": manifest.n_frames, "episodes": manifest.n_episodes, "samples": len(ds),
            "in_memory": ds.frames.in_memory, "cold": rates[0], "warm": rates[1], "rgb": shape,
            "outside_tree": outside(tree)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="a code tree to measure (repeatable, run in this order); default old=../bench-old new=.")
    parser.add_argument("--data", type=Path, default=EPISODES)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--image-size", default="720x1280", help="source frames, HxW")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every tree, in turn; best reported")
    parser.add_argument("--build-repeats", type=int, default=1, help="builds per run (best kept)")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-out"))
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)  # the store a child writes
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.data, args.child, args.build_repeats, Path(os.environ["PYTHONPATH"]).resolve())))
        return

    from common import synthetic_episodes

    trees = [t.split("=", 1) for t in args.tree] or [["old", "../bench-old"], ["new", "."]]
    files, height, width = synthetic_episodes(args.data, args.episodes, args.image_size)
    import h5py

    for path in files:  # warm the page cache for every run alike
        with h5py.File(path, "r") as f:
            f["images"][()]
    runs: dict[str, list[dict[str, object]]] = {name: [] for name, _ in trees}
    for r in range(args.rounds):
        for name, tree in trees:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            store = args.out_dir / f"baseline-{name}.zarr"
            cmd = [sys.executable, str(HERE), "--child", str(store), "--data", str(args.data),
                   "--build-repeats", str(args.build_repeats)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{name} ({tree}) failed:\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["outside_tree"]:
                sys.exit(f"{name} ({tree}) imported modules from outside its tree: {result['outside_tree']}")
            runs[name].append(result)
            print(f"round {r + 1} {name}: build {result['build_s']:.3f} s, loader epoch 1 {result['cold']:.1f} "
                  f"epoch 2 {result['warm']:.1f} samples/s (in memory {result['in_memory']}, {result['vla_data']}, "
                  f"{result['api']}, rgb {result['rgb']})", flush=True)

    first = runs[trees[0][0]][0]
    print(f"\n{first['episodes']} episodes, {first['frames']} frames of {height}x{width} -> 224x224, 1 camera; "
          f"loader W={W} K={K} batch {BATCH} on the train split ({first['samples']} samples), 0 workers, in memory; "
          f"best of {args.rounds} runs per tree, interleaved ({', '.join(n for n, _ in trees)}, ...)")
    print("| code | tree | build-splits --workers 2 s | frames/s | loader epoch 1 (cold) samples/s | "
          "loader epoch 2 samples/s |")
    print("|---|---|---:|---:|---:|---:|")
    best = {}
    for name, tree in trees:
        rs = runs[name]
        b = min(float(x["build_s"]) for x in rs)
        cold, warm = max(float(x["cold"]) for x in rs), max(float(x["warm"]) for x in rs)
        best[name] = (b, cold, warm)
        print(f"| {name} | {tree} | {b:.3f} | {int(rs[0]['frames']) / b:.0f} | {cold:.1f} | {warm:.1f} |")
    if len(trees) >= 2:
        (a, ba), (z, bz) = (trees[0][0], best[trees[0][0]]), (trees[-1][0], best[trees[-1][0]])
        print(f"{z} vs {a}: build time {bz[0] / ba[0]:.2f}x ({'slower' if bz[0] > ba[0] else 'faster'}), "
              f"loader epoch 1 {bz[1] / ba[1]:.2f}x, epoch 2 {bz[2] / ba[2]:.2f}x samples/s")
    for name, _ in trees:
        print(f"{name} runs: build s {[round(float(x['build_s']), 3) for x in runs[name]]}, "
              f"loader epoch 2 samples/s {[round(float(x['warm']), 1) for x in runs[name]]}")


if __name__ == "__main__":
    main()
