"""Benchmark the scale-out paths on one machine: build-splits on a Dask ``LocalCluster`` against the process pool,
and a store on object storage (a local S3 API server) against a local folder, for the build and the loader.

Reproduce: `make bench` or `.venv/bin/python benchmarks/scale.py [--episodes 40 --image-size 720x1280]`. The
episodes are the other benchmarks' synthetic 1-camera ones (bench-out/validate-episodes), resized to 224x224.
The S3 server is moto's (`python -m moto.server`, in its own process on 127.0.0.1, in-memory), the clients
find it through the standard AWS variables, as a user's would; it shares the machine's cores with the build.

Build rows (the page cache warmed first; the rows run in turn, --repeats rounds, each one's best reported):
- process pool: `build-splits --workers 2` (today's local path);
- LocalCluster, started by the build: 2 single-threaded worker processes started and stopped inside the timed
  run, what `--workers 2` would cost if it made a LocalCluster;
- LocalCluster, running: `--scheduler ADDRESS` of a cluster started before (a team's standing cluster);
- S3: `--workers 2` with `-o s3://...` on the local server.
Goal: LocalCluster (2 workers) within 10% of the process pool (ratio <= 1.10).

Loader rows: WindowDataset (W=8, K=10) + make_loader (batch 32, 0 workers) over the train split of the folder
store and the S3 store (the same bytes): the first fill (every episode read from the store into memory) and a
whole epoch after it, best of --repeats.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from common import best_of_interleaved, episodes_dir, rebuild, synthetic_episodes

from schemas.sample import WindowSpec
from schemas.store import BuildOptions, Preprocessing
from vla_data.samples.dataset import WindowDataset
from vla_data.samples.loader import make_loader
from vla_data.store.reader import open_store
from vla_data.synthetic.episodes import camera_settings

POOL = "process pool, --workers 2"
STARTED = "LocalCluster 2 workers, started by the build"
RUNNING = "LocalCluster 2 workers, running (--scheduler)"
S3 = "process pool, --workers 2, to s3:// (local server)"
DASK_GOAL = 1.10  # LocalCluster seconds / process pool seconds
S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3() -> subprocess.Popen:
    """moto's S3 server in its own process; this process (and the build's workers) find it by the AWS variables."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(S3_ENV | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the moto S3 server did not start (pip install 'moto[server]')") from None
            time.sleep(0.2)


def local_cluster():  # -> distributed.LocalCluster
    from distributed import LocalCluster

    # dashboard on a free port: the default 8787 clashes with the other cluster of the run
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0")


def loader_rows(stores: dict[str, str | Path], repeats: int) -> dict[str, tuple[float, float, int]]:
    """Per store: best first-fill seconds, best epoch samples/s after it, and the samples per epoch."""
    rows = {}
    for name, store in stores.items():
        fills, rates, n = [], [], 0
        for _ in range(repeats):
            ds = WindowDataset(store, "train", spec=WindowSpec(window=8, chunk=10))
            start = time.perf_counter()
            ds.load_all()
            fills.append(time.perf_counter() - start)
            start = time.perf_counter()
            n = sum(len(batch["episode"]) for batch in make_loader(ds, 32, workers=0))
            rates.append(n / (time.perf_counter() - start))
        rows[name] = (min(fills), max(rates), n)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--image-size", default="720x1280", help="source frames, HxW")
    parser.add_argument("--data", type=Path, default=None, help="1-camera episodes (default bench-out/validate-episodes)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/scale"), help="the folder stores go here")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = args.data or episodes_dir(1)
    files, height, width = synthetic_episodes(data, args.episodes, args.image_size, cameras=1)
    pre = Preprocessing(image_size=224)
    server = start_s3()
    try:
        import s3fs

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem().mkdir(bucket)
        url = f"s3://{bucket}/scale/ds.zarr"
        outs = {POOL: args.out / "pool.zarr", STARTED: args.out / "started.zarr", RUNNING: args.out / "running.zarr",
                S3: url}

        def build(name: str, scheduler: str | None = None) -> None:
            options = BuildOptions(preprocessing=pre, workers=2, scheduler=scheduler, overwrite=True)
            rebuild([data], outs[name], options, camera_settings(1))

        def started() -> None:
            with local_cluster() as cluster:
                build(STARTED, cluster.scheduler_address)

        build(POOL)  # warms the page cache (and the imports) for every row alike
        with local_cluster() as running:
            seconds = best_of_interleaved(args.repeats, {
                POOL: lambda: build(POOL),
                STARTED: started,
                RUNNING: lambda: build(RUNNING, running.scheduler_address),
                S3: lambda: build(S3),
            })
        loaders = loader_rows({"local folder": outs[POOL], "s3:// (local server)": url}, args.repeats)
    finally:
        server.terminate()
        server.wait()

    frames = open_store(outs[POOL]).manifest.n_frames
    pool = seconds[POOL]
    print(f"\n{len(files)} episodes, {frames} frames of {height}x{width} -> 224x224, best of {args.repeats}, "
          f"{os.cpu_count()} cores")
    print("| build | seconds | frames/s | x process pool |")
    print("|---|---:|---:|---:|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.2f} | {frames / s:.0f} | {s / pool:.2f}x |")
    for name in (STARTED, RUNNING):
        ratio = seconds[name] / pool
        print(f"goal {name}: <= {DASK_GOAL:.2f}x the process pool, measured {ratio:.2f}x: "
              f"{'met' if ratio <= DASK_GOAL else 'NOT met'}")
    print("\n| loader store | first fill s | first fill frames/s | epoch samples/s (after the fill) | samples |")
    print("|---|---:|---:|---:|---:|")
    train_frames = WindowDataset(outs[POOL], "train").n_frames.sum()
    for name, (fill, rate, n) in loaders.items():
        print(f"| {name} | {fill:.2f} | {train_frames / fill:.0f} | {rate:.0f} | {n} |")


if __name__ == "__main__":
    main()
