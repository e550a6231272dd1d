"""Run by LeRobot's own Python (not vla-data's): load a LeRobotDataset v3.0 folder with LeRobot's reader and dump
what it gives, for benchmarks/lerobot.py to compare with the store. No vla-data import here.

    HF_HUB_OFFLINE=1 LEROBOT_PYTHON benchmarks/lerobot_read.py DIR OUT.npz [--chunk K]

OUT.npz: per item (the dataset's order) `action`, `episode_index`, `frame_index`, `index`, `timestamp`, `task`
(strings), and per camera key `frames/<key>` as uint8 (n, H, W, 3) (LeRobot gives float (3, H, W) in [0, 1]); with
--chunk K, `chunk_action` (n, K, A) and `chunk_pad` (n, K): the action window LeRobot's policies train on
(delta_timestamps 0 .. (K-1)/fps), padded past an episode's end. Also the load and per-item times.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--repo-id", default="local/vla-data")
    parser.add_argument("--chunk", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        from ledataset.datasets.lerobot_dataset import LeRobotDataset
    except ImportError:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    imported = time.perf_counter()
    plain = LeRobotDataset(args.repo_id, root=args.root)
    fps = plain.meta.fps
    loaded = time.perf_counter()
    keys = list(plain.meta.camera_keys)
    out: dict[str, list] = {k: [] for k in ("action", "episode_index", "frame_index", "index", "timestamp", "task")}
    out |= {f"frames/{k}": [] for k in keys}
    for i in range(len(plain)):
        item = plain[i]
        for k in ("action", "episode_index", "frame_index", "index", "timestamp"):
            out[k].append(np.asarray(item[k]))
        out["task"].append(item["task"])
        for k in keys:
            pixels = np.asarray(item[k]).transpose(1, 2, 0)
            out[f"frames/{k}"].append(np.round(pixels * 255).astype(np.uint8))
    read = time.perf_counter()
    arrays = {k: np.stack(v) if k != "task" else np.asarray(v) for k, v in out.items()}
    if args.chunk:
        windowed = LeRobotDataset(args.repo_id, root=args.root,
                                  delta_timestamps={"action": [t / fps for t in range(args.chunk)]})
        items = [windowed[i] for i in range(len(windowed))]
        arrays["chunk_action"] = np.stack([np.asarray(it["action"]) for it in items])
        arrays["chunk_pad"] = np.stack([np.asarray(it["action_is_pad"]) for it in items])
    arrays["seconds"] = np.array([imported - start, loaded - imported, (read - loaded) / max(len(plain), 1)])
    arrays["episodes"] = np.array([plain.meta.total_episodes])
    np.savez(args.out, **arrays)
    print(f"read {len(plain)} frames of {plain.meta.total_episodes} episodes, cameras {keys}, fps {fps}: import "
          f"{imported - start:.1f} s, load {loaded - imported:.2f} s, {1000 * (read - loaded) / max(len(plain), 1):.2f} "
          "ms per item", file=sys.stderr)


if __name__ == "__main__":
    main()
