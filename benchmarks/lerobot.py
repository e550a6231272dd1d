"""LeRobotDataset v3.0 out and in: `vla-data export-lerobot` (PNG images, --video) and build-splits from each export,
timed against the store's own build, and the exports read by LeRobot's own reader.

Reproduce: `.venv/bin/python benchmarks/lerobot.py [--episodes 24 --image-size 56 224 --fps 10 --repeats 1
--reader PYTHON]`. The raw data is the demo's (Makefile `demo`): `make-synthetic --episodes 24 --image-size 120x214
--seed 0`, made once into bench-out/lerobot/raw-24; each case (--image-size S: the store's frame size) then runs,
in the same run and in this order, each step the best of --repeats runs: (a) the baseline, `build_store`
(build-splits --image-size S --workers 2) from the recorder files into a fresh store; (b) `export_lerobot` with PNG
images; (c) with --video (AV1, crf 30); (d) build-splits from each export (--frames-key observation.images.rgb
--color-order rgb --actions-key action --action-dim 2 --image-size S --workers 2) into a fresh store. frames/s
counts the store's frames; `x build` is the build's seconds / the row's (above 1: faster than the build). Sizes are
the folders on disk. Each import is checked against the store: the same episodes, rows and instructions (the
offset undone), and the frames' mean absolute difference (0 for PNG) and PSNR. An export that raises is a FAIL
check, its import and reading skipped. Two cases by default (S=56, the demo's, and S=224): about 75 s with the
reader on 2 shared cores (--repeats 1).
LeRobot's reader (--reader, default /work/lerobot-venv/bin/python where it exists; make one with
benchmarks/lerobot_reader_env.sh): benchmarks/lerobot_read.py runs in it (HF_HUB_OFFLINE=1, --chunk 4) on both
exports, and what it gives is checked against the store, PASS/FAIL per check: episode count; per item the episode
and frame index; `action` = the store's row t+1 (the last frame's zero); `task` = the instruction; frames exact
(PNG) or within MAD_VIDEO (video); the action windows (delta_timestamps 0..3/fps) = rows t+1..t+4, pad flagged
exactly past the episode's last frame (LeRobot's rule: the last frame's zero action is an item, not padding).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.export_lerobot import export_lerobot
from schemas import RecorderSettings
from schemas.lerobot import FrameStorage, LeRobotExport, LeRobotExportOptions
from schemas.store import BuildOptions, Preprocessing
from schemas.synthetic import SyntheticConfig
from vla_data.build.job import build_store
from vla_data.store.reader import open_store
from vla_data.synthetic.episodes import make_synthetic

CHUNK = 4
MAD_VIDEO = 6.0  # the video frames' mean absolute difference allowed (tests/test_lerobot.py's bound)
READER = Path("/work/lerobot-venv/bin/python")
HERE = Path(__file__).resolve().parent
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 (the --video encoder) prints errors only, not its banner per file


def mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def fresh(repeats: int, out: Path, fn):
    """The best seconds of ``repeats`` runs of ``fn`` writing ``out`` anew (removed before each, untimed); the
    last run's result."""
    times = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def fresh_build(repeats: int, sources: list[Path], out: Path, size: int, settings: RecorderSettings) -> float:
    options = BuildOptions(preprocessing=Preprocessing(image_size=size), workers=2)
    return fresh(repeats, out, lambda: build_store(sources, out, options, settings))[0]


def imported_settings(export: LeRobotExport) -> RecorderSettings:
    (key,) = export.cameras
    return RecorderSettings.model_validate({"cameras": [{"key": key, "color_order": "rgb"}], "actions_key": "action",
                                            "action_dim": len(export.action_names)})


def expected(store, export: LeRobotExport) -> dict[str, np.ndarray]:
    """What the export should hold, item by item in its order: frames, shifted actions, tasks, indices, and the
    action windows of CHUNK (rows t+1..t+CHUNK, clamped to the last frame) with their pad flags."""
    (camera,) = export.cameras.values()
    records = {r.episode: r for r in store.records()}
    out: dict[str, list] = {k: [] for k in ("frames", "rows", "action", "task", "episode", "frame", "window", "pad")}
    for e in export.episodes:
        a, b = store.episode_range(e.store_episode)
        n, rows = b - a, store.action[a:b]
        shifted = np.concatenate([rows[export.action_offset:], np.zeros((export.action_offset, rows.shape[1]),
                                                                       rows.dtype)])
        steps = np.arange(n)[:, None] + np.arange(CHUNK)[None, :]
        out["frames"].append(store.camera(camera)[a:b])
        out["rows"].append(rows)
        out["action"].append(shifted)
        out["task"] += [records[e.store_episode].instruction] * n
        out["episode"].append(np.full(n, e.episode_index))
        out["frame"].append(np.arange(n))
        out["window"].append(shifted[np.minimum(steps, n - 1)])
        out["pad"].append(steps > n - 1)
    return {k: np.asarray(v) if k == "task" else np.concatenate(v) for k, v in out.items()}


def compare_frames(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference and PSNR (dB; inf when equal) of two uint8 frame stacks."""
    diff = got.astype(np.float64) - want
    mse = float(np.mean(diff ** 2))
    return float(np.abs(diff).mean()), (float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse))


def check_import(store, built: Path, folder: Path, export: LeRobotExport, want: dict) -> tuple[bool, float, float]:
    """The store built from ``folder``: its episodes DIR#k with the store's rows and instructions; the frames'
    MAD and PSNR."""
    b = open_store(built)
    by_ref = {r.source_path: r for r in b.records()}
    (camera,) = b.cameras
    ok = len(by_ref) == len(export.episodes)
    frames, rows, tasks = [], [], []
    for e in export.episodes:
        y = by_ref.get(f"{folder.resolve()}#{e.episode_index}")
        if y is None:
            return False, float("nan"), float("nan")
        span = slice(*b.episode_range(y.episode))
        frames.append(b.camera(camera.name)[span])
        rows.append(b.action[span])
        tasks += [y.instruction] * y.n_frames
    ok = ok and np.array_equal(np.concatenate(rows), want["rows"]) and tasks == list(want["task"])
    return ok, *compare_frames(np.concatenate(frames), want["frames"])


def read_with_lerobot(reader: Path, folder: Path, npz: Path, storage: str, want: dict) -> list[tuple[str, bool, str]]:
    """benchmarks/lerobot_read.py in LeRobot's Python on ``folder``; each check (name, passed, detail)."""
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([str(reader), str(HERE / "lerobot_read.py"), str(folder), str(npz), "--chunk", str(CHUNK)],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return [("reads the folder", False, (done.stderr.strip().splitlines() or ["?"])[-1])]
    got = np.load(npz)
    (key,) = [k for k in got.files if k.startswith("frames/")]
    mad, psnr = compare_frames(got[key], want["frames"]) if got[key].shape == want["frames"].shape else (np.inf, 0)
    pad_ok = np.array_equal(got["chunk_pad"], want["pad"])
    live = ~want["pad"]  # the windows' values are compared where not padded (a padded slot's value is filler)
    seconds = got["seconds"]
    checks = [
        ("episodes", int(got["episodes"][0]) == want["episode"].max() + 1,
         f"{int(got['episodes'][0])} vs {want['episode'].max() + 1}"),
        ("items: episode and frame index", np.array_equal(got["episode_index"], want["episode"])
         and np.array_equal(got["frame_index"], want["frame"]), f"{len(got['frame_index'])} items"),
        ("action = store row t+1 (last frame 0)", np.array_equal(got["action"], want["action"]),
         f"max |diff| {np.abs(got['action'] - want['action']).max():.2g}"
         if got["action"].shape == want["action"].shape else "shapes differ"),
        ("task = instruction", list(got["task"]) == list(want["task"]), f"{len(set(got['task']))} tasks"),
        ("frames " + ("exact" if storage == "images" else f"MAD < {MAD_VIDEO}"),
         mad == 0 if storage == "images" else mad < MAD_VIDEO, f"MAD {mad:.3f}, PSNR {psnr:.1f} dB"),
        (f"window rows t+1..t+{CHUNK}, pad past the end", pad_ok and np.array_equal(got["chunk_action"][live],
                                                                                   want["window"][live]),
         f"{int(want['pad'].sum())} padded slots, pad flags {'equal' if pad_ok else 'DIFFER'}"),
    ]
    print(f"  LeRobot {storage}: process {wall:.1f} s; import {seconds[0]:.1f} s, load {seconds[1]:.2f} s, "
          f"{1000 * seconds[2]:.2f} ms per item")
    return checks


def run_case(root: Path, raw: Path, size: int, fps: int, reader: Path | None, repeats: int) -> tuple[list, list]:
    case = root / f"s{size}"
    case.mkdir(parents=True, exist_ok=True)
    store_path = case / "dataset.zarr"
    seconds = fresh_build(repeats, [raw], store_path, size, RecorderSettings())
    rows = [("build-splits from recorder files (baseline)", seconds, store_path)]
    store = open_store(store_path)
    exports, checks = {}, []
    for storage in FrameStorage:
        folder = case / f"export-{storage.value}"
        options = LeRobotExportOptions(fps=fps, storage=storage)
        try:
            seconds, exports[storage] = fresh(repeats, folder, lambda: export_lerobot(
                str(store_path), folder, options, lambda _: None, progress=False))
        except Exception as error:  # a failed export is a finding: reported, its import and reading skipped
            checks.append((f"export-lerobot {storage.value}", False, f"{type(error).__name__}: {error}"))
            continue
        rows.append((f"export-lerobot, {'PNG images' if storage == 'images' else '--video (AV1)'}", seconds, folder))
    for storage, export in exports.items():
        folder = case / f"export-{storage.value}"
        built = case / f"import-{storage.value}.zarr"
        seconds = fresh_build(repeats, [folder.resolve()], built, size, imported_settings(export))
        rows.append((f"build-splits from the {storage.value} export (import)", seconds, built))
        want = expected(store, export)
        ok, mad, psnr = check_import(store, built, folder, export, want)
        checks.append((f"import of {storage.value}: episodes, rows, instructions; frames "
                       + ("exact" if storage == "images" else f"MAD < {MAD_VIDEO}"),
                       ok and (mad == 0 if storage == "images" else mad < MAD_VIDEO),
                       f"MAD {mad:.3f}, PSNR {psnr:.1f} dB"))
        if reader is not None:
            checks += [(f"LeRobot {storage.value}: {name}", passed, detail) for name, passed, detail in
                       read_with_lerobot(reader, folder, case / f"lerobot-{storage.value}.npz", storage.value, want)]
    return [(size, int(store.episodes["n_frames"].sum()), len(store.records()), *r) for r in rows], checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/lerobot"))
    parser.add_argument("--episodes", type=int, default=24, help="synthetic episodes of 120x214 (the demo's 24)")
    parser.add_argument("--image-size", type=int, nargs="+", default=[56, 224], help="the store's frame size, one "
                        "case each (default 56, the demo's, and 224)")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="each timed step's best of N runs (default 1)")
    parser.add_argument("--reader", type=Path, default=READER if READER.exists() else None,
                        help=f"LeRobot's Python (default {READER} where it exists)")
    args = parser.parse_args()
    started = time.perf_counter()
    raw = (args.out / f"raw-{args.episodes}").resolve()
    if not raw.exists():
        make_synthetic(raw, SyntheticConfig(episodes=args.episodes, height=120, width=214, seed=0))
    if args.reader is None:
        print(f"LeRobot's reader: skipped (no {READER}); make one with `benchmarks/lerobot_reader_env.sh "
              "[VENV]` (default bench-out/lerobot-reader-venv), then pass --reader VENV/bin/python")
    elif not args.reader.exists():
        raise SystemExit(f"--reader {args.reader}: no such Python; make one with benchmarks/lerobot_reader_env.sh")
    table, checks = [], []
    for size in args.image_size:
        print(f"case S={size} ...", flush=True)
        rows, found = run_case(args.out, raw, size, args.fps, args.reader, args.repeats)
        table += rows
        checks += [(f"S={size} {name}", passed, detail) for name, passed, detail in found]

    print(f"\n{args.episodes} synthetic episodes of 120x214 (seed 0, {mb(raw):.1f} MB of HDF5), --fps {args.fps}, "
          f"--workers 2, best of {args.repeats}")
    print("| case | variant | seconds | frames/s | x build | size MB |")
    print("|---|---|---:|---:|---:|---:|")
    base = {}
    for size, frames, episodes, name, seconds, path in table:
        base.setdefault(size, seconds)
        print(f"| {episodes} ep, {frames} frames, S={size} | {name} | {seconds:.2f} | {frames / seconds:.0f} "
              f"| {base[size] / seconds:.2f}x | {mb(path):.1f} |")
    print("\n| check | result | detail |\n|---|---|---|")
    for name, passed, detail in checks:
        print(f"| {name} | {'PASS' if passed else 'FAIL'} | {detail} |")
    failed = sum(not passed for _, passed, _ in checks)
    print(f"\n{len(checks) - failed} PASS, {failed} FAIL; wall time {time.perf_counter() - started:.0f} s")
    print(f"reproduce: .venv/bin/python benchmarks/lerobot.py --episodes {args.episodes} --image-size "
          f"{' '.join(map(str, args.image_size))} --fps {args.fps} --repeats {args.repeats}"
          + (f" --reader {args.reader}" if args.reader else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
