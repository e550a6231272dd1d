"""The Rerun recording that `vla-data view` (and `eval --rrd`) writes: one entity tree per episode, on a
``frame`` timeline (frame t of the episode) and, where the source stamps its frames (ROS 2 bags), a ``time``
timeline. This module owns the layout; ``pipelines.view`` gathers the episodes.

```
/episodes/<key>/info               markdown (static): source, scenario, split, frames, cameras, findings
/episodes/<key>/instruction        text (static): the instruction, and where it came from
/episodes/<key>/camera/<camera>    each frame as the model sees it: RGB, S x S, after preprocessing
/episodes/<key>/recorded/<camera>  raw sources: each frame as recorded, its colour order applied (RGB)
/episodes/<key>/action/<name>      the recorded action row t, physical units, one line series per channel
/episodes/<key>/predicted/<name>   with a run: the first action of the chunk predicted at t (for row t+o)
/episodes/<key>/error/<name>       with a run: that prediction minus the recorded row t+o (where it exists)
/episodes/<key>/chunk/<name>/t<t>  with a run: the whole chunk predicted at t, at frames t+o .. t+o+K-1
```
``<key>`` is ``e<id>`` for a store's episode and the file's name for a raw one.

One training sample (`inspect-sample --rrd`), on a ``window`` timeline (step w is frame t-W+1+w):

```
/samples/<split>-<index>/info                 markdown (static): episode, t, instruction, geometry, mirrored
/samples/<split>-<index>/camera/<camera>      the window's frames; a pad frame (before the episode) greyed
/samples/<split>-<index>/frame_mask           1 for a real frame, 0 for a pad frame
/samples/<split>-<index>/pad                  a text marker at each pad frame
/samples/<split>-<index>/chunk/<name>/k<k>    action k of step w's chunk, physical units, where it is real
/samples/<split>-<index>/padded/<name>/k<k>   the same where padded (past the episode end): red points
``` The recorded and predicted
series of one channel share a colour per role (recorded grey, predicted green, error red), so that a plot of
``/episodes/<key>/**/linear_x`` compares them at a glance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from schemas.sample import SampleSummary
from schemas.view import ImageEncoding, ViewOptions

RECORDED, PREDICTED, ERROR, CHUNK = (150, 150, 150), (40, 180, 60), (220, 50, 50), (40, 180, 60, 110)
FRAME, TIME, WINDOW = "frame", "time", "window"


def entity_key(name: str) -> str:
    """A name as one entity path part: what Rerun would otherwise split or escape becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


@dataclass
class EpisodeView:
    """One episode, ready to log: frames in RGB, actions in physical units."""

    key: str  # the entity path part (``entity_key`` of an id or file name)
    info: dict[str, str]  # shown in order in the info document
    model_frames: dict[str, np.ndarray]  # camera -> (T, S, S, 3) RGB, as the model sees them
    actions: np.ndarray  # (T, A) float32, physical units
    action_names: list[str]
    instruction: str | None
    instruction_source: str  # where the instruction came from (file, CSV, file name, store...)
    findings: list[str] = field(default_factory=list)
    recorded_frames: dict[str, np.ndarray] | None = None  # camera -> (T, H, W, 3) RGB; raw sources only
    stamps_ns: np.ndarray | None = None  # (T,) the frames' stamps; None: no time timeline
    chunks: np.ndarray | None = None  # (T, K, A) the chunk predicted at every frame, physical units
    action_offset: int = 0  # the chunk at t is for the rows t+o ..

    @property
    def n_frames(self) -> int:
        return len(self.actions)

    def root(self) -> str:
        return f"episodes/{self.key}"


def _image(frame: np.ndarray, options: ViewOptions) -> rr.Image | rr.EncodedImage:
    image = rr.Image(np.ascontiguousarray(frame), color_model="RGB")
    return image.compress(jpeg_quality=options.jpeg_quality) if options.images == ImageEncoding.jpeg else image


def _series(rec: rr.RecordingStream, path: str, steps: np.ndarray, values: np.ndarray, timeline: str = FRAME) -> None:
    """One scalar per step of ``steps`` (on ``timeline``) at ``path``, sent as one column (NaN: no value there)."""
    keep = ~np.isnan(values)
    if keep.any():
        rec.send_columns(path, indexes=[rr.TimeColumn(timeline, sequence=steps[keep])],
                         columns=rr.Scalars.columns(scalars=values[keep].astype(np.float64)))


def _info(view: EpisodeView) -> str:
    lines = [f"# {view.key}", ""] + [f"- **{k}**: {v}" for k, v in view.info.items()]
    lines += ["", "## findings", ""] + ([f"- {f}" for f in view.findings] or ["none"])
    return "\n".join(lines)


def log_episode(rec: rr.RecordingStream, view: EpisodeView, options: ViewOptions) -> int:
    """Log one episode into ``rec`` (see the module doc); its frames (time steps: an image per camera and view
    each, counted once)."""
    root = view.root()
    rec.log(f"{root}/info", rr.TextDocument(_info(view), media_type=rr.MediaType.MARKDOWN), static=True)
    rec.log(f"{root}/instruction", rr.TextDocument(f"{view.instruction or '(none)'}\n\nsource: {view.instruction_source}"),
            static=True)
    frames = np.arange(view.n_frames, dtype=np.int64)
    for i, (name, part) in enumerate(zip(view.action_names, map(entity_key, view.action_names), strict=True)):
        rec.log(f"{root}/action/{part}", rr.SeriesLines(colors=[RECORDED], names=[f"recorded {name}"]), static=True)
        _series(rec, f"{root}/action/{part}", frames, view.actions[:, i].astype(np.float64))
    if view.chunks is not None:
        _log_predictions(rec, view)
    for t in range(view.n_frames):
        rec.set_time(FRAME, sequence=t)
        if view.stamps_ns is not None:
            rec.set_time(TIME, timestamp=np.datetime64(int(view.stamps_ns[t]), "ns"))
        for camera, images in view.model_frames.items():
            rec.log(f"{root}/camera/{camera}", _image(images[t], options))
        for camera, images in (view.recorded_frames or {}).items():
            rec.log(f"{root}/recorded/{camera}", _image(images[t], options))
    rec.reset_time()
    return view.n_frames


def _log_predictions(rec: rr.RecordingStream, view: EpisodeView) -> None:
    """The first predicted action and its error per frame, and every frame's whole chunk as a short curve."""
    assert view.chunks is not None
    root, t_frames, o = view.root(), view.n_frames, view.action_offset
    frames = np.arange(t_frames, dtype=np.int64)
    k = view.chunks.shape[1]
    rows = frames + o
    recorded = np.full((t_frames, len(view.action_names)), np.nan)
    inside = rows < t_frames
    recorded[inside] = view.actions[rows[inside]]
    for i, (name, part) in enumerate(zip(view.action_names, map(entity_key, view.action_names), strict=True)):
        rec.log(f"{root}/predicted/{part}", rr.SeriesLines(colors=[PREDICTED], names=[f"predicted {name}"]), static=True)
        _series(rec, f"{root}/predicted/{part}", frames, view.chunks[:, 0, i].astype(np.float64))
        rec.log(f"{root}/error/{part}", rr.SeriesLines(colors=[ERROR], names=[f"error {name}"]), static=True)
        _series(rec, f"{root}/error/{part}", frames, view.chunks[:, 0, i] - recorded[:, i])
        for t in range(t_frames):
            path = f"{root}/chunk/{part}/t{t:04d}"
            rec.log(path, rr.SeriesLines(colors=[CHUNK], widths=[1.0], names=[f"chunk at {t}"]), static=True)
            _series(rec, path, t + o + np.arange(k, dtype=np.int64), view.chunks[t, :, i].astype(np.float64))


def grey(frame: np.ndarray) -> np.ndarray:
    """A pad frame as shown: washed out towards grey, so that it never passes for a real one."""
    return (frame.astype(np.uint16) // 3 + 120).astype(np.uint8)


def log_sample(rec: rr.RecordingStream, summary: SampleSummary, frames: dict[str, np.ndarray],
               options: ViewOptions) -> str:
    """One training sample (``summary``, and each camera's (W, S, S, 3) window frames) on the ``window``
    timeline; the sample's root entity."""
    root = f"samples/{summary.split}-{summary.index}"
    mask, chunk_mask, actions = (np.asarray(summary.frame_mask), np.asarray(summary.chunk_mask),
                                 np.asarray(summary.actions, np.float64))  # (W,), (W, K), (W, K, A)
    w, k = chunk_mask.shape
    info = [f"# {summary.split} sample {summary.index}", "", f"- **episode**: {summary.episode}", f"- **t**: {summary.t}",
            f"- **instruction**: {summary.instruction}", f"- **window**: {w}, **chunk**: {k}",
            f"- **mirrored**: {summary.mirrored}", f"- **real frames**: {int(mask.sum())} of {w}",
            f"- **padded actions**: {int((~chunk_mask).sum())} of {w * k}"]
    rec.log(f"{root}/info", rr.TextDocument("\n".join(info), media_type=rr.MediaType.MARKDOWN), static=True)
    steps = np.arange(w, dtype=np.int64)
    _series(rec, f"{root}/frame_mask", steps, mask.astype(np.float64), WINDOW)
    for i, (name, part) in enumerate(zip(summary.action_names, map(entity_key, summary.action_names), strict=True)):
        for j in range(k):
            real, pad = chunk_mask[:, j], ~chunk_mask[:, j]
            if real.any():
                path = f"{root}/chunk/{part}/k{j}"
                rec.log(path, rr.SeriesLines(colors=[RECORDED], names=[f"{name} k={j}"]), static=True)
                _series(rec, path, steps[real], actions[real, j, i], WINDOW)
            if pad.any():
                path = f"{root}/padded/{part}/k{j}"
                rec.log(path, rr.SeriesPoints(colors=[ERROR], names=[f"{name} k={j} padded"], marker_sizes=[4.0]),
                        static=True)
                _series(rec, path, steps[pad], actions[pad, j, i], WINDOW)
    for step in range(w):
        rec.set_time(WINDOW, sequence=step)
        for camera, window in frames.items():
            rec.log(f"{root}/camera/{camera}", _image(window[step] if mask[step] else grey(window[step]), options))
        if not mask[step]:
            rec.log(f"{root}/pad", rr.TextLog(f"pad: frame {summary.t - w + 1 + step} is before the episode start; "
                                              "the first frame stands in", level=rr.TextLogLevel.WARN))
    rec.reset_time()
    rec.send_blueprint(rrb.Blueprint(sample_layout(root, list(frames), summary.action_names)))
    return root


def episode_layout(view: EpisodeView) -> rrb.Container:
    """The viewer's layout of one episode: its cameras, one plot per action channel (recorded, and with a run
    the predicted first action, its error and every chunk's curve), its info and instruction."""
    root = f"/{view.root()}"
    cameras = [rrb.Spatial2DView(origin=f"{root}/camera/{c}", name=f"{c} (model)") for c in view.model_frames]
    cameras += [rrb.Spatial2DView(origin=f"{root}/recorded/{c}", name=f"{c} (recorded)")
                for c in (view.recorded_frames or {})]
    legend = rrb.PlotLegend(visible=view.chunks is None)  # with a run: one entry per chunk, so colours say it
    plots = [rrb.TimeSeriesView(origin=root, name=name, plot_legend=legend, contents=[
        f"{root}/action/{part}", f"{root}/predicted/{part}", f"{root}/error/{part}", f"{root}/chunk/{part}/**"])
        for name, part in zip(view.action_names, map(entity_key, view.action_names), strict=True)]
    texts = [rrb.TextDocumentView(origin=f"{root}/info", name="info"),
             rrb.TextDocumentView(origin=f"{root}/instruction", name="instruction")]
    return rrb.Horizontal(rrb.Vertical(*cameras), rrb.Vertical(*plots), rrb.Vertical(*texts, row_shares=[3, 1]),
                          column_shares=[2, 3, 2], name=view.key)


def sample_layout(root: str, cameras: list[str], action_names: list[str]) -> rrb.Container:
    """The viewer's layout of one training sample: its window's frames, one plot per channel (the chunk's real
    actions and the padded ones), the frame mask, its info and the pad markers."""
    root = f"/{root}"
    plots = [rrb.TimeSeriesView(origin=root, name=name, contents=[f"{root}/chunk/{part}/**", f"{root}/padded/{part}/**"])
             for name, part in zip(action_names, map(entity_key, action_names), strict=True)]
    return rrb.Horizontal(
        rrb.Vertical(*[rrb.Spatial2DView(origin=f"{root}/camera/{c}", name=c) for c in cameras]),
        rrb.Vertical(*plots, rrb.TimeSeriesView(origin=f"{root}/frame_mask", name="frame_mask")),
        rrb.Vertical(rrb.TextDocumentView(origin=f"{root}/info", name="info"),
                     rrb.TextLogView(origin=f"{root}/pad", name="pad frames")),
        column_shares=[2, 3, 2])
