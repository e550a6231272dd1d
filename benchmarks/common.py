"""What the benchmark scripts share: the synthetic 720x1280 episodes they run on (1 or 2 cameras), and
best-of timing.

The episodes are generated once per camera count, seed 0, into their own folder (``episodes_dir``): the
2-camera episodes hold the same front frames and actions as the 1-camera ones, plus the side camera
(``observations/side_images``, RGB), so a 2-camera build decodes and resizes exactly twice the frames.
vla_data is imported only where the episodes are generated, so ``best_of`` also serves a run against
another code tree (benchmarks/baseline_old.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

EPISODES = Path("bench-out/validate-episodes")
EPISODES_2CAM = Path("bench-out/validate-episodes-2cam")
SIDE_KEY = "observations/side_images"  # vla_data.synthetic.episodes.SIDE.key: what a 2-camera episode adds


def episodes_dir(cameras: int) -> Path:
    """The default folder of the synthetic episodes with ``cameras`` cameras."""
    return {1: EPISODES, 2: EPISODES_2CAM}[cameras]


def _matches(files: list[Path], episodes: int, height: int, width: int, cameras: int) -> bool:
    """Whether the episode files already there are the ones asked for (count, frame size, cameras)."""
    if len(files) != episodes:
        return False
    if not files:
        return True
    import h5py

    with h5py.File(files[0], "r") as f:
        return f["images"].shape[1:3] == (height, width) and (SIDE_KEY in f) == (cameras == 2)


def synthetic_episodes(data: Path, episodes: int, image_size: str, cameras: int = 1) -> tuple[list[Path], int, int]:
    """The episode files in ``data`` (generated there once, seed 0, with ``cameras`` cameras), and the frame
    height and width."""
    from schemas.synthetic import SyntheticConfig
    from vla_data.sources.formats import find_sources
    from vla_data.synthetic.episodes import make_synthetic

    height, width = (int(v) for v in image_size.lower().split("x"))
    files = find_sources([data]) if data.exists() else []
    if not _matches(files, episodes, height, width, cameras):
        if files:
            raise SystemExit(f"{data} holds other episodes than {episodes} of {height}x{width} with {cameras} "
                             f"camera(s); remove it (or give another --data) to generate them")
        print(f"generating {episodes} episodes of {height}x{width}, {cameras} camera(s) into {data} ...", flush=True)
        extra = {"cameras": cameras} if cameras != 1 else {}  # code before the cameras had no such field
        make_synthetic(data, SyntheticConfig(episodes=episodes, height=height, width=width, seed=0, **extra))
        files = find_sources([data])
    return files, height, width


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def best_of_interleaved(repeats: int, variants: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each variant's best time of ``repeats``, the variants run in turn (a, b, a, b) so that a slow patch of
    a shared machine does not fall on one variant only."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def rebuild(sources: list[Path], out: Path | str, options, settings):
    """A build that replaces what ``out`` holds, as a timed benchmark round wants: ``--overwrite --prune``, then
    the superseded versions dropped (a store keeps its versions; repeated rounds would pile them up)."""
    from schemas.history import Retention
    from vla_data.build.job import build_store
    from vla_data.store.location import StoreLocation
    from vla_data.store.writer import collect_garbage

    options = options.model_copy(update={"overwrite": True, "prune": True})
    manifest = build_store(sources, out, options, settings).manifest
    collect_garbage(StoreLocation.of(out), wait=True, retention=Retention(keep_last=0))
    return manifest
