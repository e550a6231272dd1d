"""`vla-data eval`: a checkpoint scored on every anchor of a store split, beside three baselines.

For each anchor t the policy's chunk (the window ending at t, as in training) is compared with the recorded
actions t+o..t+o+K-1 in physical units; actions past the episode's end are masked out. The baselines are
the mean and the most common action of the store's train split, and zero velocity. Writes into OUT:

```
metrics.json       schemas.evaluation.EvalReport: overall and per-scenario figures, policy and baselines
per_episode.csv    one row per episode x horizon x predictor: count, success, mae_/mse_/rmse_/direction_<channel>
trajectories.png   predicted vs recorded first action per channel over time, for a few episodes
errors.png         histograms of the first action's error per channel, policy and baselines
scenarios.png      first-action MAE and success per scenario, policy and baselines
```
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipelines.eval_plots import plot_errors, plot_scenarios, plot_trajectories
from pipelines.eval_results import LABELS, EpisodeResult
from pipelines.trained_data import data_line, refuse_overlap, trained_data
from schemas.evaluation import Comparison, EvalOptions, EvalReport, Horizon, LevelConfusion, MetricSet, Predictor
from schemas.train import Precision
from vla_data import __version__
from vla_data.samples.dataset import WindowDataset
from vla_data.common.files import atomic_path, write_text_atomic
from vla_data.store.reader import open_store, pin
from vla_data.samples.windows import anchor_chunks
from vla_model.loading import check_store
from vla_model.metrics import baseline_actions, compare, level_confusion
from vla_model.runtime import Policy

METRICS = "metrics.json"
PER_EPISODE = "per_episode.csv"


def _concat(results: Iterable[EpisodeResult]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chosen = list(results)
    return (np.concatenate([r.pred for r in chosen]), np.concatenate([r.true for r in chosen]),
            np.concatenate([r.mask for r in chosen]))


def evaluate_checkpoint(
    checkpoint: Path, store: str | Path, options: EvalOptions, device: str | None = None, progress: bool = True,
    model: str | None = None,
) -> tuple[EvalReport, list[EpisodeResult]]:
    """Score ``checkpoint`` (its backbone from ``model`` when given) on every anchor of ``options.split`` of
    ``store``; raises CheckpointError, StoreError, ModelNotFound or ValueError with a message for the user."""
    opened = open_store(store)
    policy = Policy.from_checkpoint(checkpoint, device, model, options.precision, options.compile)
    reference = (Policy.from_checkpoint(checkpoint, device, model) if options.precision != Precision.fp32 else None)
    check_store(policy.meta, opened.manifest)
    spec = policy.spec
    train_split = policy.meta.train_config.data.train_split
    train_actions = opened.split_actions(train_split.value)
    if not len(train_actions):
        raise ValueError(f"{store}: split {train_split.value!r} is empty; the baselines need it")
    baselines = baseline_actions(train_actions)
    data = pin(opened)
    found = trained_data(policy.meta.data, train_split.value, opened, data, options.split.value)
    refuse_overlap(found, options.split.value, options.allow_train_overlap)
    ds = WindowDataset(opened, options.split, spec=spec, normalize=False)
    scenario_of = dict(zip(opened.episodes["episode"], opened.episodes["scenario"].astype(str), strict=True))

    results, largest = [], None
    for e in tqdm(range(len(ds.episode_ids)), desc=f"eval {options.split.value}", unit="episode", disable=not progress):
        t = ds.t[ds.which == e]
        frames = {c: ds.camera_frames[c].episode(e) for c in policy.camera_names}
        chunks = policy.episode_chunks(frames, ds.instructions[e], options.batch_size)[t]
        if reference is not None:  # the same anchors in fp32: how far the precision moves the chunks
            fp32 = reference.episode_chunks(frames, ds.instructions[e], options.batch_size)[t]
            gap = np.abs(chunks - fp32).reshape(-1, chunks.shape[-1]).max(0)
            largest = gap if largest is None else np.maximum(largest, gap)
        true, mask = anchor_chunks(ds.actions[e], t, spec)
        episode = int(ds.episode_ids[e])
        results.append(EpisodeResult(episode, scenario_of[episode], ds.instructions[e], t, chunks, true, mask))

    scenarios = sorted({r.scenario for r in results})
    report = EvalReport(
        tool_version=__version__,
        checkpoint=str(policy.path),
        step=policy.meta.step,
        store=str(store),
        data=data,
        trained_on=policy.meta.data,
        changed_since_trained=found.change if found is not None else None,
        trained_episodes_scored=found.overlap if found is not None else [],
        overlap_checked=found.readable if found is not None else True,
        options=options,
        action_names=policy.action_names,
        cameras=policy.camera_names,
        n_episodes=len(results),
        n_anchors=int(sum(len(r.t) for r in results)),
        train_mean=[float(v) for v in baselines[Predictor.train_mean]],
        most_common=[float(v) for v in baselines[Predictor.most_common]],
        overall=compare(*_concat(results), baselines, options),
        scenarios={s: compare(*_concat(r for r in results if r.scenario == s), baselines, options) for s in scenarios},
        precision_max_abs_difference=None if largest is None else [float(v) for v in largest],
        level_confusion=_confusion(policy, results),
    )
    return report, results


def _confusion(policy: Policy, results: list[EpisodeResult]) -> dict[str, LevelConfusion]:
    """A discrete head's per-channel confusion of levels over every first action scored (a regression head: none)."""
    levels = policy.meta.action_levels
    if levels is None:
        return {}
    pred, true, mask = _concat(results)
    return {name: level_confusion(pred[:, 0, a], true[:, 0, a], mask[:, 0], levels[a])
            for a, name in enumerate(policy.action_names)}


# -- files ---------------------------------------------------------------------------------------------------
def _columns(metrics: MetricSet, names: list[str]) -> dict[str, float | int | None]:
    row: dict[str, float | int | None] = {"count": metrics.count, "success": metrics.success}
    for field in ("mae", "mse", "rmse", "direction_accuracy"):
        values = getattr(metrics, field)
        row |= {f"{field}_{name}": v for name, v in zip(names, values, strict=True)}
    return row


def per_episode_table(report: EvalReport, results: list[EpisodeResult]) -> pd.DataFrame:
    """One row per episode x horizon x predictor."""
    options = report.options
    rows = []
    for r in results:
        comparison = compare(r.pred, r.true, r.mask, report.baselines(), options)
        for horizon, by_predictor in comparison.items():
            for who, metrics in by_predictor.items():
                rows.append({"episode": r.episode, "scenario": r.scenario, "instruction": r.instruction,
                             "anchors": len(r.t), "horizon": horizon.value, "predictor": who.value,
                             **_columns(metrics, report.action_names)})
    return pd.DataFrame(rows)


def write_outputs(report: EvalReport, results: list[EpisodeResult], out: Path) -> list[Path]:
    """metrics.json, per_episode.csv and the three PNGs, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / METRICS, report.model_dump_json(indent=2))
    with atomic_path(out / PER_EPISODE) as tmp:
        per_episode_table(report, results).to_csv(tmp, index=False)
    plots = [
        plot_trajectories(report, results, out / "trajectories.png"),
        plot_errors(report, results, out / "errors.png"),
        plot_scenarios(report, out / "scenarios.png"),
    ]
    return [out / METRICS, out / PER_EPISODE, *plots]


# -- the terminal --------------------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def comparison_table(comparison: Comparison, names: list[str], tolerance: float) -> pd.DataFrame:
    """Rows: metric x channel; columns: horizon x predictor (policy, then each baseline)."""
    metrics = [("MAE", "mae"), ("RMSE", "rmse"), ("MSE", "mse"), ("direction acc.", "direction_accuracy")]
    index = [(label, name) for label, _ in metrics for name in names] + [(f"success@{tolerance:g}", "all")]
    columns = pd.MultiIndex.from_tuples(
        [(h.value + (" action" if h == Horizon.first else ""), LABELS[p]) for h in Horizon for p in Predictor]
    )
    cells = []
    for _, field in metrics:
        for c in range(len(names)):
            cells.append([_fmt(getattr(comparison[h][p], field)[c]) for h in Horizon for p in Predictor])
    cells.append([_fmt(comparison[h][p].success) for h in Horizon for p in Predictor])
    return pd.DataFrame(cells, index=pd.MultiIndex.from_tuples(index), columns=columns)


def scenario_table(report: EvalReport) -> pd.DataFrame:
    """First-action MAE (mean over channels) and success, per scenario, policy beside the baselines."""
    rows = {}
    for scenario, comparison in report.scenarios.items():
        first = comparison[Horizon.first]
        rows[(scenario, first[Predictor.policy].count)] = [
            _fmt(None if first[p].mae[0] is None else float(np.mean(first[p].mae))) for p in Predictor
        ] + [_fmt(first[p].success) for p in Predictor]
    columns = pd.MultiIndex.from_tuples([("MAE (first action)", LABELS[p]) for p in Predictor]
                                        + [(f"success@{report.options.tolerance:g}", LABELS[p]) for p in Predictor])
    table = pd.DataFrame(list(rows.values()), index=pd.MultiIndex.from_tuples(list(rows), names=["scenario", "first actions"]),
                         columns=columns)
    return table


def render_report(report: EvalReport) -> str:
    head = (f"{report.checkpoint} (step {report.step}) on {report.store}, split {report.options.split.value}: "
            f"{report.n_episodes} episodes, {report.n_anchors} anchors; camera(s) {', '.join(report.cameras) or '-'}; "
            f"physical units; dead band "
            f"{report.options.dead_band:g}; baselines: train-mean {[round(v, 3) for v in report.train_mean]}, most common "
            f"{[round(v, 3) for v in report.most_common]}, zero velocity")
    overall = comparison_table(report.overall, report.action_names, report.options.tolerance)
    parts = [head, data_line(report.data, report.trained_on, report.changed_since_trained,
                             report.trained_episodes_scored, report.store, report.overlap_checked),
             overall.to_string(), "per scenario:", scenario_table(report).to_string()]
    for name, confusion in report.level_confusion.items():
        levels = [f"{v:+g}" for v in confusion.levels]
        table = pd.DataFrame(confusion.counts, index=[f"recorded {v}" for v in levels], columns=levels)
        parts.append(f"{name}: first actions by level, recorded (rows) x predicted (columns)\n{table.to_string()}")
    if report.precision_max_abs_difference is not None:
        gaps = ", ".join(f"{n} {v:.4f}" for n, v in zip(report.action_names, report.precision_max_abs_difference,
                                                       strict=True))
        parts.append(f"{report.options.precision.value} against fp32, the largest difference of any chunk entry "
                     f"(physical units): {gaps}")
    return "\n\n".join(parts)
