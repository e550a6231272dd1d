"""`vla-data info STORE --plot FILE.png`: a store at a glance, as one PNG.

The figure holds, per action channel, a histogram of its values with one step histogram per split on
shared bins; a histogram of episode lengths per split; and a grid of sample frames, each from a different
episode (chosen reproducibly from ``seed``; every camera's frame side by side), titled with episode id, split
and a shortened instruction.
Rendering uses ``Figure`` + ``FigureCanvasAgg`` directly: no pyplot, no global backend state.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.figures import require_png, save_png
from schemas.store import Split
from vla_data.common.ranges import episode_lengths, episode_starts
from vla_data.store.reader import DatasetStore

EPISODE_LENGTH = "episode length"
COLORS = {Split.train.value: "tab:blue", Split.val.value: "tab:orange", Split.test.value: "tab:green"}
FRAME_COLUMNS = 4


def sample_frames(store: DatasetStore, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``(episode, frame index)`` pairs: up to ``n`` episodes without repeats, one random frame of each."""
    ends = store.episode_ends
    starts = episode_starts(ends)
    nonempty = np.flatnonzero(ends > starts)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(nonempty, size=min(max(n, 0), len(nonempty)), replace=False)
    return sorted((int(e), int(rng.integers(starts[e], ends[e]))) for e in chosen)


def _shorten(instruction: str, width: int = 36) -> str:
    """The instruction on up to three lines (its end says left or right, so it is kept when it fits)."""
    if not instruction.strip():
        return "(no instruction)"
    return textwrap.fill(instruction, width, max_lines=3, placeholder="...")


def store_figure(store: DatasetStore, n_sample_frames: int = 8, seed: int = 0) -> Figure:
    """The figure ``plot_store`` saves; its axes titles name every panel."""
    table = store.episodes.sort_values("episode").reset_index(drop=True)
    splits = [s.value for s in Split if s.value in set(table["split"])]
    lengths = episode_lengths(store.episode_ends)
    frame_split = np.repeat(table["split"].to_numpy(), lengths)
    actions = np.asarray(store.action[:], dtype=np.float64)  # one read
    names = store.manifest.actions.names
    samples = sample_frames(store, n_sample_frames, seed)
    cols = min(FRAME_COLUMNS, max(len(samples), 1))
    rows = math.ceil(len(samples) / cols)

    fig = Figure(figsize=(3.2 * max(len(names) + 1, cols), 3.0 + 2.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2 if rows else 1, 1, height_ratios=[3.0, 2.6 * rows] if rows else None)
    top = grid[0].subgridspec(1, len(names) + 1)
    for c, name in enumerate(names):
        ax = fig.add_subplot(top[0, c])
        values = actions[:, c]
        finite = np.isfinite(values)
        bins = np.histogram_bin_edges(values[finite], bins=30)
        for s in splits:
            ax.hist(values[finite & (frame_split == s)], bins=bins, histtype="step", density=True,
                    color=COLORS[s], label=s)
        ax.set(title=name, xlabel="value", ylabel="density")
        ax.legend(fontsize="small")
    ax = fig.add_subplot(top[0, len(names)])
    bins = np.histogram_bin_edges(lengths, bins=min(20, max(len(lengths), 1)))
    for s in splits:
        ax.hist(table.loc[table["split"] == s, "n_frames"], bins=bins, histtype="step", color=COLORS[s], label=s)
    ax.set(title=EPISODE_LENGTH, xlabel="frames", ylabel="episodes")
    ax.legend(fontsize="small")

    if samples:
        cameras = store.manifest.camera_names
        # only the sampled frames; the cameras of one frame side by side, in the policy's order
        frames = np.concatenate([np.asarray(store.camera(c).oindex[[i for _, i in samples]]) for c in cameras], axis=2)
        cells = grid[1].subgridspec(rows, cols)
        shown = f" [{' | '.join(cameras)}]" if len(cameras) > 1 else ""
        for k, ((episode, _), frame) in enumerate(zip(samples, frames, strict=True)):
            row = table.loc[table["episode"] == episode].iloc[0]
            ax = fig.add_subplot(cells[k // cols, k % cols])
            ax.imshow(frame)
            ax.set_title(f"ep {episode} ({row['split']}){shown}\n{_shorten(str(row['instruction']))}", fontsize="small")
            ax.set_axis_off()
    return fig


def plot_store(store: DatasetStore, out: Path, n_sample_frames: int = 8, seed: int = 0) -> Path:
    """Write the store's overview figure to ``out`` (a .png), atomically; return ``out``."""
    out = require_png(Path(out))
    return save_png(store_figure(store, n_sample_frames, seed), out, dpi=100)
