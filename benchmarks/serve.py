"""Latency and throughput of `vla-data serve`: a policy step through the websocket server and ``PolicyClient``
against the same step in-process (``PolicyRunner.step``).

Reproduce: `.venv/bin/python benchmarks/serve.py` (about a minute on 2 CPU cores; `--frame noise` for a
worst-case JPEG, `--steps`/`--concurrent-steps`/`--paced-seconds` to make it shorter or longer).
Model: tiny-random on the CPU (``bench_policy`` of benchmarks/inference.py), W=8, K=10, fp32, one camera.
Every step sends one 720x1280x3 uint8 BGR frame: the same frame every step, either raw (2.7 MB of pixels) or
as a JPEG (quality 90, encoded once with Pillow from that frame, as a camera driver's CompressedImage would
arrive). `--frame scene` (default) is a frame of the synthetic episodes the other benchmarks use (flat
surfaces: a small JPEG); `--frame noise` is uniform random pixels (the largest JPEG a 720p frame gives).
The server runs in a background thread of this process (``serving``, port 0 on 127.0.0.1), the clients in
other threads: they share the 2 cores and the GIL with the server, as a robot and a policy server on one
machine would share the cores, not the GIL.

Baseline, measured in the same run: ``PolicyRunner.step`` on the raw frame in-process (one step per call,
time.perf_counter around each, after a warm-up), interleaved with the served steps (so it shares the
process with the server's and the clients' threads as they do; a row measured alone, before the server
starts, is printed for reference). Measured:
  1. in-process step latency, p50 and p99;
  2. one client on loopback: client-side round trip of ``PolicyClient.step_timed`` (raw and JPEG), p50 and
     p99, and the overhead: round trip minus the in-process step, at p50 and at p99; with where the time
     goes (msgpack packing and unpacking, the server's JPEG decode, the policy, the rest: websocket + loopback
     + the reply). Goal: overhead <= 5 ms at p50 and <= 10 ms at p99 for a JPEG 720p frame;
  3. 1, 4 and 8 clients (threads), each stepping JPEG frames as fast as it can: total steps/s and the round
     trip each client sees (p50, p99 over every client's steps); then 8 clients paced at 10 Hz each (a step
     every 100 ms), the robots' real load. Goal: 80 steps/s sustained: the paced run delivers >= 95% of
     80 steps/s and no step takes longer than its 100 ms tick at p99.
p99 over the default 200 steps is the third slowest step: a stall or two of the machine shows; raise --steps
for a steadier tail.
"""

from __future__ import annotations

import argparse
import io
import os
import threading
import time

import numpy as np
import torch
from inference import INSTRUCTION, K, W, bench_policy
from PIL import Image

from pipelines.serve import serving
from schemas.serve import ServeConfig
from vla_client.client import PolicyClient
from vla_client.protocol import STEP, EncodedFrame, encoded, pack, unpack
from vla_data.synthetic.episodes import render
from vla_model.runtime import Policy, PolicyRunner

Frame = np.ndarray | EncodedFrame
OVERHEAD_P50_MS, OVERHEAD_P99_MS = 5.0, 10.0
RATE_HZ, CLIENTS_AT_RATE = 10.0, 8
SUSTAINED = 0.95  # of the asked steps/s


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def make_frame(kind: str) -> np.ndarray:
    """One 720x1280 BGR uint8 frame."""
    rng = np.random.default_rng(0)
    if kind == "noise":
        return rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    rgb = render(0.3, 2.0, "2box_hori", (720, 1280), 1.0, rng, 3)  # as synthetic episodes' frames are drawn
    return np.ascontiguousarray(rgb[..., ::-1])  # the collector's frames are BGR


def jpeg_of(bgr: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def timed_steps(runner: PolicyRunner, frame: np.ndarray, steps: int) -> list[float]:
    """Milliseconds of each of ``steps`` in-process steps."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        runner.step(frame)
        times.append(1000 * (time.perf_counter() - start))
    return times


def single(policy: Policy, url: str, raw: np.ndarray, jpeg: EncodedFrame, steps: int, warmup: int, rounds: int
           ) -> tuple[list[float], dict[str, tuple[list[float], list[dict[str, float]]]]]:
    """In-process ``PolicyRunner.step`` on the raw frame, and the client-side round trip of the raw and the
    JPEG frame through the server with the server's timing of each, in ``rounds`` interleaved rounds (a
    machine that speeds up or slows down during the run moves all three alike)."""
    runner = policy.runner()
    runner.reset(INSTRUCTION)
    clients = {"raw": (PolicyClient(url, timeout=60), raw), "JPEG": (PolicyClient(url, timeout=60), jpeg)}
    for client, frame in clients.values():
        client.reset(INSTRUCTION)
        for _ in range(warmup):
            client.step(frame)
    for _ in range(warmup):
        runner.step(raw)
    base: list[float] = []
    served: dict[str, tuple[list[float], list[dict[str, float]]]] = {name: ([], []) for name in clients}
    per_round = [steps // rounds + (i < steps % rounds) for i in range(rounds)]
    for n in per_round:
        base += timed_steps(runner, raw, n)
        for name, (client, frame) in clients.items():
            trips, timing = served[name]
            for _ in range(n):
                start = time.perf_counter()
                _, ms = client.step_timed(frame)
                trips.append(1000 * (time.perf_counter() - start))
                timing.append(ms)
    for client, _ in clients.values():
        client.close()
    return base, served


def codec_ms(camera: str, frame: Frame, repeats: int) -> tuple[float, float, int]:
    """Median ms to msgpack a step message holding ``frame`` and to unpack it, and its size in bytes."""
    message = {"type": STEP, "frames": {camera: frame}, "timestamp": time.time()}
    packs, unpacks = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        data = pack(message)
        packs.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        unpack(data)
        unpacks.append(1000 * (time.perf_counter() - start))
    return pct(packs, 50), pct(unpacks, 50), len(data)


def concurrent(url: str, frame: Frame, clients: int, steps: int, warmup: int, period: float | None,
               lockstep: bool = False) -> tuple[float, list[float], list[float]]:
    """``clients`` clients in threads, each ``steps`` steps, free-running (``period`` None) or one step every
    ``period`` seconds (client i's ticks shifted by i/clients of a period, robots not in step with each other,
    unless ``lockstep``): total steps/s over the timed part, every step's round trip (ms), each client's
    steps/s."""
    connections = [PolicyClient(url, timeout=60) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    trips: list[list[float]] = [[] for _ in range(clients)]
    rates = [0.0] * clients

    def robot(i: int) -> None:
        client = connections[i]
        client.reset(INSTRUCTION)
        for _ in range(warmup):
            client.step(frame)
        barrier.wait()
        if period is not None and not lockstep:
            time.sleep(period * i / clients)
        began = time.perf_counter()
        for n in range(steps):
            if period is not None:  # the tick's time: a late step is not made up by a burst
                wait = began + n * period - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            start = time.perf_counter()
            client.step(frame)
            trips[i].append(1000 * (time.perf_counter() - start))
        rates[i] = steps / (time.perf_counter() - began)

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for client in connections:
        client.close()
    return clients * steps / wall, [ms for client in trips for ms in client], rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="Timed steps of the latency runs (1 and 2).")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds the latency steps are split into.")
    parser.add_argument("--warmup", type=int, default=10, help="Untimed steps before every timed run.")
    parser.add_argument("--concurrent-steps", type=int, default=100, help="Timed steps per client in 3.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="Client counts of 3.")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="Length of the paced 8 x 10 Hz run.")
    parser.add_argument("--lockstep", action="store_true",
                        help="Paced clients tick at the same instants (the worst case) rather than spread out.")
    parser.add_argument("--frame", choices=("scene", "noise"), default="scene",
                        help="scene: a synthetic episode's frame; noise: uniform random pixels (worst-case JPEG).")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality.")
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = bench_policy(False, "cpu")
    raw = make_frame(args.frame)
    jpeg_bytes = jpeg_of(raw, args.quality)
    jpeg = encoded("jpeg", jpeg_bytes)

    alone_runner = policy.runner()
    alone_runner.reset(INSTRUCTION)
    timed_steps(alone_runner, raw, args.warmup)
    alone = timed_steps(alone_runner, raw, args.steps // args.rounds)  # no server, no client threads yet
    with serving(policy, ServeConfig(port=0)) as server:
        base, one = single(policy, server.url, raw, jpeg, args.steps, args.warmup, args.rounds)
        free = {n: concurrent(server.url, jpeg, n, args.concurrent_steps, args.warmup, None) for n in args.clients}
        paced_steps = max(1, round(args.paced_seconds * RATE_HZ))
        paced = concurrent(server.url, jpeg, CLIENTS_AT_RATE, paced_steps, args.warmup, 1 / RATE_HZ, args.lockstep)
    camera = policy.camera_names[0]
    codecs = {"raw": codec_ms(camera, raw, 20), "JPEG": codec_ms(camera, jpeg, 20)}

    cores = os.cpu_count()
    print(f"\ntiny-random on CPU ({cores} CPU threads, torch {torch.get_num_threads()} threads), fp32; W={W}, K={K}; "
          f"one 720x1280 BGR frame per step ({args.frame}); JPEG quality {args.quality}, {len(jpeg_bytes) / 1024:.0f} KiB; "
          f"{args.steps} timed steps after {args.warmup} warm-up; server and clients in one process on 127.0.0.1; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    b50, b99 = pct(base, 50), pct(base, 99)

    print("\n1-2. One step, one client")
    print("| variant | p50 ms | p99 ms | overhead p50 ms | overhead p99 ms | p50 vs in-process | "
          "round trip - server total, p50 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| in-process PolicyRunner.step, raw frame (baseline, interleaved with the served steps) | {b50:.2f} | "
          f"{b99:.2f} | | | 1x | |")
    print(f"| in-process, alone: before the server starts ({len(alone)} steps; for reference) | {pct(alone, 50):.2f} "
          f"| {pct(alone, 99):.2f} | | | {pct(alone, 50) / b50:.2f}x | |")
    over = {}
    for name, (trips, timing) in one.items():
        t50, t99 = pct(trips, 50), pct(trips, 99)
        over[name] = (t50 - b50, t99 - b99)
        wire = [trip - t["total"] for trip, t in zip(trips, timing, strict=True)]  # step by step
        print(f"| serve + PolicyClient, {name} frame | {t50:.2f} | {t99:.2f} | {t50 - b50:.2f} | {t99 - b99:.2f} "
              f"| {t50 / b50:.2f}x | {pct(wire, 50):.2f} / {pct(wire, 99):.2f} |")
    print("(overhead: the round trip's percentile minus the in-process one; round trip - server total: what is "
          "not the server's decode and policy step, step by step)")

    print("\nWhere a served step's time goes (p50 ms; pack/unpack: the step message, measured apart; "
          "rest: websocket framing, loopback, the reply, the thread hops; medians do not add up exactly)")
    print("| frame | message | client pack | server unpack | server decode | server policy | rest | round trip |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (trips, timing) in one.items():
        packed, unpacked, size = codecs[name]
        decode = pct([t["decode"] for t in timing], 50)
        policy_ms = pct([t["policy"] for t in timing], 50)
        rt = pct(trips, 50)
        rest = rt - packed - unpacked - decode - policy_ms
        print(f"| {name} | {size / 2**20:.2f} MiB | {packed:.2f} | {unpacked:.2f} | {decode:.2f} | {policy_ms:.2f} "
              f"| {rest:.2f} | {rt:.2f} |")
    j50, j99 = over["JPEG"]
    ok = j50 <= OVERHEAD_P50_MS and j99 <= OVERHEAD_P99_MS
    print(f"goal JPEG 720p transport overhead <= {OVERHEAD_P50_MS:.0f} ms p50 and <= {OVERHEAD_P99_MS:.0f} ms p99: "
          f"{'met' if ok else 'NOT met'} ({j50:.2f} ms p50, {j99:.2f} ms p99)")

    print(f"\n3. Concurrent clients, JPEG frames, {args.concurrent_steps} steps each as fast as each can "
          f"(one policy; the steps waiting when it is free go through the backbone as one batch)")
    print("| clients | total steps/s | per client steps/s (min) | round trip p50 ms | round trip p99 ms | "
          "steps/s vs 1 client |")
    print("|---|---:|---:|---:|---:|---:|")
    first = free[args.clients[0]][0]
    for n, (rate, trips, rates) in free.items():
        print(f"| {n} | {rate:.1f} | {min(rates):.1f} | {pct(trips, 50):.2f} | {pct(trips, 99):.2f} | "
              f"{rate / first:.2f}x |")
    _, trips, rates = paced
    rate = sum(rates)  # what the robots got, each over its own ticks
    asked = CLIENTS_AT_RATE * RATE_HZ
    phase = "in lockstep" if args.lockstep else "ticks spread over the period"
    print(f"| {CLIENTS_AT_RATE}, paced at {RATE_HZ:.0f} Hz each, {phase} ({paced_steps} steps each) | {rate:.1f} | "
          f"{min(rates):.1f} | {pct(trips, 50):.2f} | {pct(trips, 99):.2f} | |")
    ok = rate >= SUSTAINED * asked and pct(trips, 99) < 1000 / RATE_HZ
    capacity = free.get(CLIENTS_AT_RATE, (None,))[0]
    room = f"; free-running {CLIENTS_AT_RATE} clients: {capacity:.1f} steps/s, {capacity / asked:.1f}x the load" \
        if capacity else ""
    print(f"goal {CLIENTS_AT_RATE} clients at {RATE_HZ:.0f} Hz each ({asked:.0f} steps/s) sustained (>= "
          f"{SUSTAINED:.0%} delivered, p99 round trip < {1000 / RATE_HZ:.0f} ms): {'met' if ok else 'NOT met'} "
          f"({rate:.1f} steps/s, p99 {pct(trips, 99):.1f} ms{room})")


if __name__ == "__main__":
    main()
