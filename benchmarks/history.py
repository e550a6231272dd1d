"""Benchmark the store's history design (immutable segments, versions of small tables) against the previous
design, copy-per-add (every build copied the whole store into a new version; commit d30fe39).

Reproduce (from the repository root; the baseline tree is a worktree of d30fe39, never modified):

    git worktree add ../wt-baseline d30fe39
    .venv/bin/python benchmarks/history.py [--quick] [--baseline-tree ../wt-baseline]

Synthetic 1-camera episodes of 120x214 (cheap to decode), stored 224x224 (squash), builds with --workers 2.
Bytes written = the growth of the sum of the file sizes under the store folder; seconds = time.perf_counter.
The baseline runs in a child process whose PYTHONPATH is its tree (the same episodes, the same functions).
Everything lands in bench-out/history/. Tables:

1. Adding 1 episode (another seed, its own folder, both folders as sources) to a store of 40 and of 400
   episodes (--quick: 10 and 40), best of 2 (each on a fresh copy of the store), against the one-episode
   build: the same episode added to a store of 2 (a store of 1 cannot be built: it needs a train and a val
   episode). Targets: bytes <= 1.5x the new episode's stored frames (its segment's data/) + 64 KB per 100
   stored episodes; seconds <= 1.2x the one-episode build.
2. A build with nothing new (the same sources again), best of 2: bytes (target 0) and seconds.
3. Edits of the 400-episode store (remove, relabel, resplit to val, restore, tag), 1 run each: frame bytes
   (under segments/, target 0), total bytes, seconds (target < 1 s). The old code had no edits: no baseline.
4. Pinned read: the first 50 train samples of v1 of the 40 store (normalize=False) hashed, 10 edits, read
   again: byte-identical; loader samples/s (epoch 2, workers 0, frames in memory, best of 3) of store@v1 vs
   the current version (target within 5%).
5. Storage after 10 adds of 1 episode to a store of 10 (--quick: 3), then gc with keep_last=0, vs one fresh
   build of the same episodes (target within 10%); the baseline's bytes before and after its gc.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("bench-out/history")
HEIGHT, WIDTH = 120, 214
KB = 1024


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def data_bytes(store: Path, folders: list[str] | None = None) -> int:
    """The bytes of the data/ files of the named segments (or of every segment and version folder)."""
    roots = [store / "segments" / f for f in folders] if folders is not None else \
        [*store.glob("segments/*"), *store.glob("versions/*")]
    return sum(tree_bytes(r / "data") for r in roots)


def build(sources: list[Path], out: Path) -> object:
    from schemas import RecorderSettings
    from schemas.store import BuildOptions, Preprocessing
    from vla_data.build.job import build_store

    options = BuildOptions(preprocessing=Preprocessing(image_size=224), workers=2)
    return build_store(sources, out, options, RecorderSettings())


def gc(store: Path) -> None:
    from schemas.history import Retention
    from vla_data.store.location import StoreLocation
    from vla_data.store.writer import collect_garbage

    collect_garbage(StoreLocation.of(store), wait=True, retention=Retention(keep_last=0))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def add_to(src: Path, add: Path, work: Path, repeats: int = 2) -> dict[str, float]:
    """A store of ``src``; then, on fresh copies of it, add ``add`` (best seconds, most bytes, the bytes of the new
    segment's data/), and build again with nothing new."""
    base, store = work / "base.zarr", work / "add.zarr"
    r: dict[str, float] = {"base_s": timed(lambda: build([src], fresh(base))), "episodes": len(list(src.glob("*.h5")))}
    adds, nothing = [], []
    for _ in range(repeats):
        shutil.copytree(base, fresh(store))
        before, segs = tree_bytes(store), set(os.listdir(store / "segments")) if (store / "segments").exists() else set()
        seconds = timed(lambda: build([src, add], store))
        new = sorted(set(os.listdir(store / "segments")) - segs) if (store / "segments").exists() else None
        adds.append((seconds, tree_bytes(store) - before, data_bytes(store, new) if new is not None else -1))
    for _ in range(repeats):
        before = tree_bytes(store)
        seconds = timed(lambda: build([src, add], store))
        nothing.append((seconds, tree_bytes(store) - before))
    r.update(add_s=min(a[0] for a in adds), add_bytes=max(a[1] for a in adds), seg_bytes=adds[0][2],
             nothing_s=min(n[0] for n in nothing), nothing_bytes=max(n[1] for n in nothing))
    return r


def adds_storage(base: Path, adds: list[Path], work: Path) -> dict[str, float]:
    """A store of ``base``, then one build per folder of ``adds`` (each adding 1), gc; vs one fresh build."""
    store, whole = work / "adds.zarr", work / "fresh.zarr"
    build([base], fresh(store))
    seconds = timed(lambda: [build([base, *adds[:k + 1]], store) for k in range(len(adds))])
    before = tree_bytes(store)
    gc(store)
    build([base, *adds], fresh(whole))
    return {"adds_s": seconds, "before_gc": before, "after_gc": tree_bytes(store), "fresh": tree_bytes(whole)}


def measure(plan: dict) -> dict:
    """What runs in both trees: table 1 and 2 (add_one per size) and table 5 (adds_storage)."""
    work = Path(plan["work"])
    sizes = {str(n): add_to(Path(src), Path(plan["add"]), work / f"n{n}") for n, src in plan["sizes"]}
    sizes["alone"] = add_to(Path(plan["pair"]), Path(plan["add"]), work / "alone")
    storage = adds_storage(Path(plan["base10"]), [Path(p) for p in plan["adds"]], work / "storage")
    return {"sizes": sizes, "storage": storage}


def child(plan: dict) -> None:
    tree = Path(os.environ["PYTHONPATH"]).resolve()
    from baseline_old import isolate, outside

    isolate()
    result = measure(plan)
    result["outside_tree"] = outside(tree)
    print(json.dumps(result))


def episodes(folder: Path, n: int, seed: int) -> Path:
    from schemas.synthetic import SyntheticConfig
    from vla_data.synthetic.episodes import make_synthetic

    if len(list(folder.glob("*.h5"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        make_synthetic(folder, SyntheticConfig(episodes=n, seed=seed, height=HEIGHT, width=WIDTH))
    return folder


def edits_table(store: Path) -> None:
    from schemas.edits import EpisodeSelection, Relabel, Resplit
    from schemas.store import Split
    from vla_data.store import edits
    from vla_data.store.history import create_tag
    from vla_data.store.location import StoreLocation
    from vla_data.store.reader import open_store

    loc = StoreLocation.of(store)
    table = open_store(store).episodes
    train = str(int(table.index[table["split"] == "train"][2]))
    one = lambda i: EpisodeSelection(episodes=(i,))  # noqa: E731
    previous: list[str] = []
    steps = {
        "remove episode 0": lambda: edits.remove(loc, one("0")),
        "relabel episode 1": lambda: edits.relabel(loc, one("1"), Relabel(instruction="Go to the bench bottle")),
        f"resplit train episode {train} to val": lambda: edits.resplit(loc, one(train), Resplit(to=Split.val)),
        "restore the previous version": lambda: edits.restore(loc, previous[-2]),
        "tag the current version": lambda: create_tag(loc, "bench", previous[-1]),
    }
    print(f"\n### 3. Edits of the {len(table)}-episode store (1 run each; the old code had no edits: no baseline)")
    print("| edit | frame bytes written (segments/) | total bytes written | seconds | targets (0 frame bytes, < 1 s) |")
    print("|---|---:|---:|---:|---|")
    for name, step in steps.items():
        previous.append(open_store(store).version)
        segs, total = tree_bytes(store / "segments"), tree_bytes(store)
        seconds = timed(step)
        frame, written = tree_bytes(store / "segments") - segs, tree_bytes(store) - total
        ok = "met" if frame == 0 and seconds < 1 else "NOT met"
        print(f"| {name} | {frame} | {written / KB:.1f} KB | {seconds:.3f} | {ok} |")


def pinned_table(base: Path, work: Path) -> None:
    import numpy as np
    import torch
    from schemas.edits import EpisodeSelection, Relabel, Resplit
    from schemas.sample import WindowSpec
    from schemas.store import Split
    from vla_data.samples.dataset import WindowDataset
    from vla_data.samples.loader import make_loader
    from vla_data.store import edits
    from vla_data.store.location import StoreLocation
    from vla_data.store.reader import open_store

    store = fresh(work / "pinned.zarr")
    shutil.copytree(base, store)
    loc, opened = StoreLocation.of(store), open_store(store)
    one = lambda name: EpisodeSelection(episodes=(name,))  # noqa: E731
    v1, spec = opened.version, WindowSpec(window=8, chunk=10)

    def digest() -> str:
        ds = WindowDataset(f"{store}@{v1}", "train", spec, normalize=False)
        h = hashlib.sha256()
        for i in range(min(50, len(ds))):
            for key, value in sorted(ds[i].items()):
                values = value.values() if isinstance(value, dict) else [value]
                for v in values:
                    h.update(v.numpy().tobytes() if isinstance(v, torch.Tensor) else np.asarray(v).tobytes())
        return h.hexdigest()

    before = digest()
    table = opened.episodes
    train = table["split"] == "train"
    others = [Path(p).name for p in table.loc[table.index >= table.index[train][2], "source_path"]][::-1]  # not read
    others_train = [n for n in others if n in set(table.loc[train, "source_path"].map(lambda p: Path(p).name))]
    steps = [lambda i=i: edits.relabel(loc, one(others[i]), Relabel(instruction=f"Edit number {i}")) for i in range(5)]
    steps += [lambda n=n: edits.resplit(loc, one(n), Resplit(to=Split.val)) for n in others_train[:3]]
    steps += [lambda n=n: edits.remove(loc, one(n)) for n in (others_train[3], next(n for n in others if n not in others_train))]
    written = [step()[0] is not None for step in steps]
    assert all(written) and len(written) == 10, "an edit wrote no version"
    after = digest()
    assert before == after, f"store@{v1}: the samples changed after 10 edits"
    current = open_store(store).version
    assert current != v1

    def epoch2(address: str) -> tuple[float, int]:
        ds = WindowDataset(address, "train", spec, memory_budget=1 << 40)
        loader = make_loader(ds, batch_size=32, workers=0, seed=0)
        for _ in loader:  # epoch 1: the frames read into memory
            pass
        start, n = time.perf_counter(), 0
        while n < 2000:  # whole epochs, at least 2000 samples
            for batch in loader:
                n += len(batch["t"])
        return n / (time.perf_counter() - start), len(ds)

    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {v1: [], current: []}
    sizes: dict[str, int] = {}
    for _ in range(3):
        for version in rates:
            rate, sizes[version] = epoch2(f"{store}@{version}")
            rates[version].append(rate)
    pinned, now = max(rates[v1]), max(rates[current])
    print(f"\n### 4. Pinned read of {store}@{v1} after 10 edits (5 relabel, 3 resplit, 2 remove)")
    print(f"first 50 train samples (normalize=False) sha256 {before[:16]} before and after: byte-identical")
    print("| version read | train samples | loader samples/s (epochs 2.. >= 2000 samples, workers 0, in memory, best of 3) | x current |")
    print("|---|---:|---:|---:|")
    print(f"| current {current} (baseline) | {sizes[current]} | {now:.0f} | 1.00x |")
    print(f"| pinned v1 {v1} | {sizes[v1]} | {pinned:.0f} | {pinned / now:.2f}x |")
    print(f"target pinned within 5% of current: {'met' if pinned >= 0.95 * now else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes 10 and 40, 3 adds: a fast check")
    parser.add_argument("--baseline-tree", type=Path, default=Path("../wt-baseline"), help="a worktree of d30fe39")
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=None,
                        help="store sizes the baseline adds to (default both)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(json.loads(args.child))
    start = time.perf_counter()
    small, large, n_adds = (10, 40, 3) if args.quick else (40, 400, 10)
    data = OUT / "sources"
    print(f"generating episodes ({HEIGHT}x{WIDTH}) into {data} ...", flush=True)
    srcs = {n: episodes(data / f"n{n}", n, 0) for n in (small, large)}
    add, pair, base10 = episodes(data / "add", 1, 1), episodes(data / "pair", 2, 2), episodes(data / "base10", 10, 3)
    adds = [episodes(data / f"add{k}", 1, 100 + k) for k in range(n_adds)]
    plan = {"sizes": [[n, str(srcs[n])] for n in (small, large)], "add": str(add), "pair": str(pair), "base10": str(base10),
            "adds": [str(a) for a in adds]}
    print("new design: measuring ...", flush=True)
    new = measure({**plan, "work": str(OUT / "new")})
    old_sizes = [n for n in (small, large) if args.baseline_sizes is None or n in args.baseline_sizes]
    print(f"baseline (copy-per-add, {args.baseline_tree}): measuring ...", flush=True)
    env = {**os.environ, "PYTHONPATH": str(args.baseline_tree.resolve())}
    old_plan = {**plan, "sizes": [s for s in plan["sizes"] if s[0] in old_sizes], "work": str(OUT / "old")}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(old_plan)], env=env,
                          stdout=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit("the baseline child failed")
    old = json.loads(done.stdout.strip().splitlines()[-1])
    if old["outside_tree"]:
        sys.exit(f"the baseline imported modules from outside its tree: {old['outside_tree']}")

    print(f"\n### 1. Add 1 episode ({HEIGHT}x{WIDTH} -> 224x224, --workers 2; best of 2, each on a fresh copy)")
    print("1-episode build: the same episode added to a store of 2 (a store needs a train and a val episode, so a "
          "store of 1 cannot be built); the new episode's stored frames: its segment's data/ (new design)")
    print("| store | design | initial build s | bytes written | x baseline | target bytes | seconds | x baseline "
          "| 1-episode build s | target seconds | bytes target | seconds target |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    frames = new["sizes"]["alone"]["seg_bytes"]
    for n in (small, large):
        base = old["sizes"].get(str(n))
        for design, res in (("baseline copy-per-add", base), ("segments (new)", new["sizes"][str(n)])):
            if res is None:
                print(f"| {n} episodes | {design} | not run | | | | | | | | | |")
                continue
            alone = (old if res is base else new)["sizes"]["alone"]["add_s"]
            limit = 1.5 * frames + 64 * KB * n / 100
            xb = f"{res['add_bytes'] / base['add_bytes']:.3f}x" if base else ""
            xs = f"{res['add_s'] / base['add_s']:.2f}x" if base else ""
            print(f"| {n} episodes | {design} | {res['base_s']:.1f} | {res['add_bytes'] / KB:,.0f} KB | {xb} "
                  f"| {limit / KB:,.0f} KB | {res['add_s']:.2f} | {xs} | {alone:.2f} | {1.2 * alone:.2f} "
                  f"| {'met' if res['add_bytes'] <= limit else 'NOT met'} "
                  f"| {'met' if res['add_s'] <= 1.2 * alone else 'NOT met'} |")
    print(f"the new episode's stored frames: {frames / KB:,.0f} KB ({frames:,} bytes); target bytes = 1.5x that "
          "+ 64 KB per 100 stored episodes")
    if large not in old_sizes:
        print(f"note: the baseline was not run on the {large}-episode store (--baseline-sizes {old_sizes})")

    print("\n### 2. A build with nothing new (the same sources again; best of 2)")
    print("| store | design | bytes written | seconds | x baseline seconds | bytes target (0) |")
    print("|---|---|---:|---:|---:|---|")
    for n in (small, large):
        base = old["sizes"].get(str(n))
        for design, res in (("baseline copy-per-add", base), ("segments (new)", new["sizes"][str(n)])):
            if res is not None:
                x = f"{res['nothing_s'] / base['nothing_s']:.2f}x" if base else ""
                print(f"| {n} + 1 episodes | {design} | {res['nothing_bytes']:,} | {res['nothing_s']:.2f} | {x} "
                      f"| {'met' if res['nothing_bytes'] == 0 else 'NOT met'} |")

    edits_table(OUT / "new" / f"n{large}" / "add.zarr")
    pinned_table(OUT / "new" / f"n{small}" / "base.zarr", OUT / "new")

    print(f"\n### 5. Storage: a store of 10, {n_adds} builds adding 1 episode each, gc keep_last=0, vs one fresh build")
    print(f"| design | {n_adds} adds s | bytes before gc | bytes after gc | fresh build bytes | after gc / fresh | "
          "target (within 10%) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for design, res in (("baseline copy-per-add", old["storage"]), ("segments (new)", new["storage"])):
        ratio = res["after_gc"] / res["fresh"]
        print(f"| {design} | {res['adds_s']:.1f} | {res['before_gc'] / KB:,.0f} KB | {res['after_gc'] / KB:,.0f} KB "
              f"| {res['fresh'] / KB:,.0f} KB | {ratio:.3f} | {'met' if abs(ratio - 1) <= 0.10 else 'NOT met'} |")
    print(f"\nwall time of the whole run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
