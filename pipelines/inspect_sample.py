"""`vla-data inspect-sample`: one training sample as the model sees it, in words, drawn, as JSON or in Rerun.

The PNG shows the W window frames in a row per camera (repeated frames before the episode start greyed and marked
"pad") and, under each frame, its K x A action chunk in physical units (masked entries hollow and grey).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.figures import require_png, save_png
from schemas.sample import SampleField, SampleSummary, WindowSpec
from vla_data.samples.dataset import WindowDataset


def summarize_sample(ds: WindowDataset, index: int) -> SampleSummary:
    """The sample's shapes, masks and physical actions (denormalised if the dataset normalises)."""
    s = ds[index]
    actions = ds.denormalize(s["actions"]) if ds.normalize else s["actions"].numpy()
    return SampleSummary(
        split=ds.split.value,
        index=index,
        episode=s["episode"],
        t=s["t"],
        instruction=s["instruction"],
        mirrored=ds.is_mirrored(index % len(ds)),
        action_names=ds.action_names,
        shapes={f: list(s[f.value].shape) for f in (SampleField.frame_mask, SampleField.actions, SampleField.chunk_mask)},
        cameras={c: list(frames.shape) for c, frames in s["rgb"].items()},
        frame_mask=s["frame_mask"].tolist(),
        chunk_mask=s["chunk_mask"].tolist(),
        actions=np.round(actions.astype(np.float64), 6).tolist(),
    )


def render_sample(summary: SampleSummary, samples: int, spec: WindowSpec) -> str:
    """The sample in three lines: where in the split and episode, its instruction, its shapes."""
    masked = sum(not m for row in summary.chunk_mask for m in row)
    return "\n".join([
        f"{summary.split} sample {summary.index} of {samples}: episode {summary.episode}, t={summary.t}, "
        f"{sum(summary.frame_mask)}/{spec.window} real frames, {masked} of {spec.window * spec.chunk} actions padded",
        f"instruction: {summary.instruction}",
        "shapes: " + ", ".join(f"{k.value} {tuple(v)}" for k, v in summary.shapes.items()),
    ])


def record_sample(ds: WindowDataset, index: int, summary: SampleSummary, out: Path) -> None:
    """Write sample ``index`` as a Rerun recording to ``out`` (.rrd): its window's frames on a ``window``
    timeline, pad frames greyed, each chunk's actions as curves (``pipelines.rerun_recording.log_sample``)."""
    from pipelines.rerun_recording import log_sample  # rerun and the policy runtime are loaded only here
    from pipelines.view import Sink, record
    from schemas.view import ImageEncoding, ViewOptions

    frames = {c: f.numpy().transpose(0, 2, 3, 1) for c, f in ds[index]["rgb"].items()}
    record(Sink(save=out), f"sample-{summary.split}-{index}",
           lambda rec: log_sample(rec, summary, frames, ViewOptions(images=ImageEncoding.raw)))


def plot_sample(ds: WindowDataset, index: int, out: Path) -> Path:
    """Draw sample ``index`` to ``out`` (PNG), written atomically."""
    require_png(out)
    s, summary = ds[index], summarize_sample(ds, index)
    cameras = {c: f.numpy().transpose(0, 2, 3, 1) for c, f in s["rgb"].items()}  # each (W, S, S, 3)
    actions, chunk_mask = np.asarray(summary.actions), np.asarray(summary.chunk_mask)
    w, k = chunk_mask.shape
    n = len(cameras)
    fig = Figure(figsize=(max(6.0, 1.8 * w), 2.1 * (n + 1)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n + 1, w, squeeze=False, height_ratios=[1] * (n + 1))
    lo, hi = float(min(actions.min(), -0.1)), float(max(actions.max(), 0.1))
    colors = [f"C{c}" for c in range(actions.shape[-1])]
    for j in range(w):
        real = bool(summary.frame_mask[j])
        for row, (camera, rgb) in enumerate(cameras.items()):
            frame, top = rgb[j], axes[row, j]
            top.imshow(frame if real else (0.35 * frame + 0.65 * 128).astype(np.uint8))
            if row == 0:
                top.set_title(f"t{j - w + 1:+d}" if j < w - 1 else "t (anchor)", fontsize="small",
                              color="black" if real else "grey")
            if j == 0 and n > 1:
                top.set_ylabel(camera, fontsize="small")
            if not real:
                top.text(0.5, 0.5, "pad", transform=top.transAxes, ha="center", va="center", color="white", weight="bold")
            top.set_xticks([]), top.set_yticks([])
        bottom = axes[n, j]
        for c, name in enumerate(summary.action_names):
            bottom.plot(range(k), actions[j, :, c], color=colors[c], lw=1, label=name)
            on, off = chunk_mask[j], ~chunk_mask[j]
            bottom.scatter(np.flatnonzero(on), actions[j, on, c], color=colors[c], s=12)
            bottom.scatter(np.flatnonzero(off), actions[j, off, c], facecolors="none", edgecolors="grey", s=12)
        bottom.set_ylim(lo - 0.1, hi + 0.1)
        bottom.set_xlabel("k", fontsize="small")
        if j:
            bottom.set_yticklabels([])
    axes[n, 0].legend(fontsize="x-small", loc="best")
    fig.suptitle(
        f"{summary.split} sample {index}: episode {summary.episode}, t={summary.t}"
        f"{' (mirrored)' if summary.mirrored else ''}\n{summary.instruction}", fontsize="small"
    )
    return save_png(fig, out, dpi=90)
