"""What `vla-data export` buys a robot: ``LocalPolicy`` (onnxruntime, CPU, no torch) against ``PolicyRunner`` (torch
eager, CPU, fp32) on the same policy, the same frames, the same cores.

Reproduce: `.venv/bin/python benchmarks/export.py` (tiny-random, about a minute on 2 CPU cores); add `--full-size`
for the full Kosmos-2 architecture (random weights: nothing is downloaded; about 1.66B parameters, 6.6 GB in
fp32, and as much again on disk for the export: see `--workdir`).
The policy is ``bench_policy`` of benchmarks/inference.py (W=8, K=10, one camera), built with torch seed 0. Every
step takes one random raw 720x1280 BGR uint8 frame (frame t drawn from seed t, so both runtimes see the same
frames) and returns the (K, A) chunk in physical units. This process runs three others, one after another, and
holds neither torch nor onnxruntime itself (Linux keeps a process's peak RSS across exec, so a heavy parent
would show in its children's numbers):
  1. export: builds the policy and times ``export_loaded`` (ONNX graphs + onnxruntime's parity self-check) into
     a temporary folder; its time, the folder's size and the process's peak RSS;
  2. torch: builds the same policy (seed 0), ``PolicyRunner`` steps the frames;
  3. robot: ``LocalPolicy(folder, threads=...)`` steps the same frames in a process that never imports torch
     (checked: 'torch' not in sys.modules at the end), its PYTHONPATH the client package only.
torch.set_num_threads and LocalPolicy's threads are both --threads [default: os.cpu_count()]. Measured per
runtime: per-step latency (time.perf_counter around step, after --warmup untimed steps): p50 and mean over
--steps; peak RSS (resource.getrusage ru_maxrss) at the end of the loop, and after loading, before the first
step. Parity: the largest difference of any chunk entry of the two runtimes over every step (it also checks that
the torch process rebuilt the weights that were exported).
Run it on otherwise idle cores: with --threads = every core and another job on one of them, torch's OpenMP
threads wait on each other and its steps get many times slower (onnxruntime's less); the load average at the
start is printed, and `--threads 1` gives a fairer comparison on a busy machine.
Goals (at full size): LocalPolicy p50 <= 0.6x PolicyRunner's; the robot process's peak RSS <= 0.6x the torch
process's; parity <= 1e-4 physical units (the export's own fp32 tolerance). The tiny model is mostly fixed
costs (imports, preprocessing), so its ratios say little about the full-size ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LATENCY_GOAL, RSS_GOAL, PARITY_GOAL = 0.6, 0.6, 1e-4
Step = Callable[[dict[str, np.ndarray]], np.ndarray]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def frame_at(t: int, size: tuple[int, int]) -> np.ndarray:
    """Step t's raw BGR frame: the same in every process, made one at a time (a list of them would weigh on RSS)."""
    return np.random.default_rng(t).integers(0, 256, (*size, 3), dtype=np.uint8)


def run_loop(step: Step, camera: str, job: dict[str, Any], loaded_mb: float) -> dict[str, Any]:
    """``job['warmup']`` untimed steps then ``job['steps']`` timed ones; the times, RSS, and every step's chunk."""
    size, times, chunks = tuple(job["frame_size"]), [], []
    for t in range(job["warmup"] + job["steps"]):
        frame = {camera: frame_at(t, size)}
        start = time.perf_counter()
        chunks.append(step(frame))
        if t >= job["warmup"]:
            times.append(1000 * (time.perf_counter() - start))
    np.save(job["chunks"], np.stack(chunks))
    return {"p50_ms": float(np.percentile(times, 50)), "mean_ms": float(np.mean(times)), "loaded_mb": loaded_mb,
            "peak_mb": peak_rss_mb(), "camera": camera}


def role_export(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(job["threads"])
    from inference import INSTRUCTION, bench_policy

    from pipelines.export import export_loaded
    from schemas.export import ExportOptions

    torch.manual_seed(0)
    start = time.perf_counter()
    policy = bench_policy(job["full_size"], "cpu")
    built = time.perf_counter() - start
    folder = Path(job["folder"])
    start = time.perf_counter()
    exported = export_loaded(policy, folder, ExportOptions(), lambda line: print(f"  export: {line}", flush=True))
    seconds = time.perf_counter() - start
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    return {"build_s": built, "export_s": seconds, "files": files, "peak_mb": peak_rss_mb(),
            "instruction": INSTRUCTION, "self_check": exported.parity.max_chunk_error, "window": policy.window,
            "chunk": policy.chunk, "exporter": exported.exporter}


def role_torch(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(job["threads"])
    from inference import bench_policy

    torch.manual_seed(0)  # as role_export: the weights exported
    policy = bench_policy(job["full_size"], "cpu")
    runner = policy.runner()
    runner.reset(job["instruction"])
    result = run_loop(runner.step, policy.camera_names[0], job, peak_rss_mb())
    return result | {"threads": torch.get_num_threads(), "version": f"torch {torch.__version__}"}


def role_robot(job: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime

    from vla_client.local import LocalPolicy

    policy = LocalPolicy(job["folder"], threads=job["threads"])
    policy.reset(job["instruction"])
    result = run_loop(policy.step, policy.cameras[0], job, peak_rss_mb())
    assert "torch" not in sys.modules, "the robot process imported torch"
    return result | {"threads": job["threads"], "version": f"onnxruntime {onnxruntime.__version__}",
                     "providers": policy.providers, "transformers": "transformers" in sys.modules}


ROLES = {"export": role_export, "torch": role_torch, "robot": role_robot}


def child(role: str, job: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run ``role`` in a process of its own (the robot's sees the client package only) and read back its result."""
    path = tmp / f"{role}.json"
    job = job | {"chunks": str(tmp / f"{role}-chunks.npy"), "result": str(path)}
    (tmp / f"{role}-job.json").write_text(json.dumps(job))
    outer = os.environ.get("PYTHONPATH")
    python_path = str(REPO / "client") if role == "robot" else os.pathsep.join(filter(None, [str(REPO), outer]))
    print(f"{role}: running ...", flush=True)
    done = subprocess.run([sys.executable, __file__, "--role", role, "--job", str(tmp / f"{role}-job.json")],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": python_path})
    if done.returncode != 0:
        raise SystemExit(f"the {role} process failed (exit {done.returncode}); see its output above")
    return json.loads(path.read_text())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="The full Kosmos-2 architecture (random weights).")
    parser.add_argument("--steps", type=int, help="Timed steps per runtime [default: 50, 10 with --full-size].")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed steps before them.")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Threads of both runtimes.")
    parser.add_argument("--frame-size", default="720x1280", help="HxW of the raw BGR frames.")
    parser.add_argument("--workdir", type=Path, help="Where the temporary export folder goes [default: the "
                        "system's temp dir]; 7 GB free for --full-size.")
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:  # one of the measured processes
        job = json.loads(args.job.read_text())
        Path(job["result"]).write_text(json.dumps(ROLES[args.role](job)))
        return

    steps = args.steps or (10 if args.full_size else 50)
    height, width = (int(v) for v in args.frame_size.lower().split("x"))
    load = os.getloadavg()[0]  # other work on the cores slows torch's OpenMP threads most
    job = {"full_size": args.full_size, "steps": steps, "warmup": args.warmup, "threads": args.threads,
           "frame_size": [height, width]}
    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=args.workdir) as name:
        tmp = Path(name)
        export = child("export", job | {"folder": str(tmp / "policy")}, tmp)
        job |= {"folder": str(tmp / "policy"), "instruction": export["instruction"]}
        torch_side = child("torch", job, tmp)
        robot = child("robot", job, tmp)
        parity = float(np.abs(np.load(tmp / "torch-chunks.npy") - np.load(tmp / "robot-chunks.npy")).max())
    assert "torch" not in sys.modules  # nor in this process: its RSS would carry over into the children's

    model = "Kosmos-2 full-size (random), fp32" if args.full_size else "tiny-random, fp32"
    folder_mb = sum(export["files"].values()) / 2**20
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"\n{model} on CPU ({os.cpu_count()} cores; {args.threads} threads each runtime; OMP_NUM_THREADS={omp}; "
          f"load average {load:.1f} at the start); W={export['window']}, K={export['chunk']}, one camera "
          f"({robot['camera']}), raw {height}x{width} BGR frames; {args.warmup} warm-up + {steps} timed steps per "
          f"runtime, each runtime in its own process; {torch_side['version']}, {robot['version']} "
          f"({', '.join(robot['providers'])})")
    print("| model | runtime | p50 ms/step | mean ms/step | RSS loaded MB | peak RSS MB | p50 vs torch | "
          "peak RSS vs torch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    rows = [("PolicyRunner (torch eager)", torch_side), ("LocalPolicy (onnxruntime, no torch)", robot)]
    for runtime, r in rows:
        print(f"| {model} | {runtime} | {r['p50_ms']:.2f} | {r['mean_ms']:.2f} | {r['loaded_mb']:.0f} | "
              f"{r['peak_mb']:.0f} | {r['p50_ms'] / torch_side['p50_ms']:.2f}x | "
              f"{r['peak_mb'] / torch_side['peak_mb']:.2f}x |")
    files = ", ".join(f"{n} {s / 2**20:.1f} MB" for n, s in export["files"].items())
    print(f"\nexport (export_loaded: ONNX graphs + its onnxruntime self-check): {export['export_s']:.1f} s (policy "
          f"built in {export['build_s']:.1f} s before), folder {folder_mb:.1f} MB ({files}); export process peak "
          f"RSS {export['peak_mb']:.0f} MB; exporters {export['exporter']}; self-check chunk difference "
          f"{export['self_check']:.1e}")
    print(f"parity: max |chunk difference| LocalPolicy vs PolicyRunner over all {args.warmup + steps} steps: "
          f"{parity:.2e} physical units (robot process: torch imported: no, transformers imported: "
          f"{'yes' if robot['transformers'] else 'no'})")
    latency = robot["p50_ms"] / torch_side["p50_ms"]
    rss = robot["peak_mb"] / torch_side["peak_mb"]
    scope = "" if args.full_size else " (set for --full-size; the tiny model measures fixed costs)"
    print(f"goals{scope}:")
    print(f"  LocalPolicy p50 <= {LATENCY_GOAL}x PolicyRunner's: {verdict(latency <= LATENCY_GOAL)} ({latency:.2f}x)")
    print(f"  robot process peak RSS <= {RSS_GOAL}x the torch process's: {verdict(rss <= RSS_GOAL)} ({rss:.2f}x)")
    print(f"  parity <= {PARITY_GOAL:.0e}: {verdict(parity <= PARITY_GOAL)} ({parity:.2e})")
    flags = " --full-size" if args.full_size else ""
    print(f"reproduce: .venv/bin/python benchmarks/export.py{flags} --steps {steps} --warmup {args.warmup} "
          f"--threads {args.threads}")


if __name__ == "__main__":
    main()
