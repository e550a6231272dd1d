"""The PNGs of `vla-data eval` (``Figure`` + ``FigureCanvasAgg``: no pyplot, no global backend state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.eval_results import LABELS, EpisodeResult
from pipelines.figures import save_png
from schemas.evaluation import EvalReport, Horizon, Predictor

PANEL_FRAMES = 300  # anchors per trajectory panel: more is a solid block at the figure's width
FEW_POINTS = 60  # up to this many anchors per panel each is marked (a single point draws no line)
COLORS = {Predictor.policy: "tab:blue", Predictor.train_mean: "tab:gray", Predictor.most_common: "tab:green",
          Predictor.zero_velocity: "tab:red"}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def shown_episodes(report: EvalReport, results: list[EpisodeResult]) -> list[EpisodeResult]:
    """The episodes trajectories.png draws: the first ``plot_episodes`` of the split (at least one), those
    with a recorded first action before those without (a 1-frame episode has none at action offset 1)."""
    recorded_first = sorted(results, key=lambda r: not r.mask[:, 0].any())  # stable: split order otherwise
    return recorded_first[: report.options.plot_episodes] or recorded_first[:1]


def trajectories_figure(report: EvalReport, results: list[EpisodeResult]) -> Figure:
    """The figure ``plot_trajectories`` saves. Each panel shows at most ``PANEL_FRAMES`` anchors of its
    episode (the first ones, their range in the title) and marks every point when there are few."""
    shown = shown_episodes(report, results)
    names = report.action_names
    fig = _figure(4.0 * len(names), 2.4 * max(len(shown), 1))
    axes = fig.subplots(max(len(shown), 1), len(names), squeeze=False)
    for row, r in zip(axes, shown, strict=False):
        part = slice(0, PANEL_FRAMES)
        t, true, pred, real = r.t[part], r.true[part, 0], r.pred[part, 0], r.mask[part, 0]
        marker = "o" if len(t) <= FEW_POINTS else None
        frames = f"frames {t[0]}-{t[-1]} of {len(r.t)}" if len(r.t) > len(t) else f"{len(t)} frame{'s' * (len(t) != 1)}"
        if not real.any():
            frames += ", none recorded"  # e.g. a 1-frame episode: its next action was never sent
        for c, (ax, name) in enumerate(zip(row, names, strict=True)):
            ax.plot(t[real], true[real, c], color="black", lw=1.5, marker=marker, ms=4, label="recorded")
            ax.plot(t, pred[:, c], color=COLORS[Predictor.policy], lw=1.2, marker=marker, ms=3, label="policy")
            ax.axhline(report.train_mean[c], color=COLORS[Predictor.train_mean], ls="--", lw=1, label="train mean")
            ax.set_title(f"episode {r.episode} ({r.scenario}): {name}, {frames}", fontsize=8)
            ax.set_xlabel("frame", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    return fig


def plot_trajectories(report: EvalReport, results: list[EpisodeResult], out: Path) -> Path:
    """Per episode (rows) and channel (columns): recorded vs predicted first action over the anchors."""
    return save_png(trajectories_figure(report, results), out, dpi=100)


def plot_errors(report: EvalReport, results: list[EpisodeResult], out: Path) -> Path:
    """Per channel: histograms of (prediction - recorded) of the first action, policy and each baseline."""
    names = report.action_names
    pred = np.concatenate([r.pred[:, 0] for r in results])
    true = np.concatenate([r.true[:, 0] for r in results])
    real = np.concatenate([r.mask[:, 0] for r in results])
    errors = {Predictor.policy: (pred - true)[real]} | {
        who: (np.asarray(action) - true)[real] for who, action in report.baselines().items()}
    fig = _figure(4.0 * len(names), 3.0)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for c, (ax, name) in enumerate(zip(axes, names, strict=True)):
        spread = max(float(np.abs(e[:, c]).max()) if len(e) else 0.0 for e in errors.values()) or 1.0
        bins = np.linspace(-spread, spread, 41)
        for who, e in errors.items():
            ax.hist(e[:, c], bins=bins, histtype="step", lw=1.5, color=COLORS[who], label=LABELS[who])
        ax.axvspan(-report.options.tolerance, report.options.tolerance, color="green", alpha=0.08, label="within tol")
        ax.set_title(f"{name}: first-action error", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    return save_png(fig, out, dpi=100)


def plot_scenarios(report: EvalReport, out: Path) -> Path:
    """First-action MAE (mean over channels) and success@tol per scenario, policy beside the baselines."""
    scenarios = list(report.scenarios)
    x = np.arange(len(scenarios))
    width = 0.8 / len(Predictor)
    fig = _figure(max(6.0, 1.2 * len(scenarios) + 2), 5.0)
    mae_ax, success_ax = fig.subplots(2, 1, sharex=True)
    for i, who in enumerate(Predictor):
        first = [report.scenarios[s][Horizon.first][who] for s in scenarios]
        mae = [np.mean(m.mae) if m.count else np.nan for m in first]
        success = [m.success if m.success is not None else np.nan for m in first]
        mae_ax.bar(x + i * width, mae, width, color=COLORS[who], label=LABELS[who])
        success_ax.bar(x + i * width, success, width, color=COLORS[who])
    mae_ax.set_ylabel("MAE, first action")
    success_ax.set_ylabel(f"success@{report.options.tolerance:g}")
    success_ax.set_xticks(x + width * (len(Predictor) - 1) / 2, scenarios, rotation=30, ha="right", fontsize=8)
    mae_ax.legend(fontsize=8)
    return save_png(fig, out, dpi=100)
