"""What the benchmark scripts share: the synthetic 720x1280 episodes they run on, and best-of timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from schemas.synthetic import SyntheticConfig
from vla_data.recorder import episode_files
from vla_data.synthetic import make_synthetic

EPISODES = Path("bench-out/validate-episodes")


def synthetic_episodes(data: Path, episodes: int, image_size: str) -> tuple[list[Path], int, int]:
    """The episode files in ``data`` (generated there once, seed 0), and the frame height and width."""
    height, width = (int(v) for v in image_size.lower().split("x"))
    files = episode_files([data]) if data.exists() else []
    if len(files) != episodes:
        print(f"generating {episodes} episodes of {height}x{width} into {data} ...", flush=True)
        make_synthetic(data, SyntheticConfig(episodes=episodes, height=height, width=width, seed=0))
        files = episode_files([data])
    return files, height, width


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
