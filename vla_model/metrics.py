"""Action metrics in physical units, over unmasked actions only (plain numpy; ``schemas.evaluation`` holds
the shapes they are reported in).

``pred`` and ``true`` are (N, K, A): N chunks of K actions of A channels; ``mask`` (N, K) is True where the
true action exists (False past an episode's end: padding, never scored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from schemas.evaluation import Comparison, EvalOptions, Horizon, LevelConfusion, MetricSet, Predictor


def direction(x: np.ndarray, dead_band: float) -> np.ndarray:
    """-1, 0 or +1 per entry: 0 where |x| is below the dead band."""
    return np.where(np.abs(x) < dead_band, 0, np.sign(x)).astype(np.int8)


def _listed(values: np.ndarray) -> list[float | None]:
    return [float(v) for v in values]


def action_metrics(pred: np.ndarray, true: np.ndarray, mask: np.ndarray, tolerance: float, dead_band: float) -> MetricSet:
    """Per-channel MAE, MSE, RMSE and direction accuracy, and success@tolerance, over the unmasked actions."""
    pred, true, mask = np.asarray(pred, np.float64), np.asarray(true, np.float64), np.asarray(mask, bool)
    if pred.shape != true.shape or pred.shape[:-1] != mask.shape:
        raise ValueError(f"pred {pred.shape}, true {true.shape} and mask {mask.shape} do not line up")
    channels = pred.shape[-1]
    p, t = pred[mask], true[mask]  # (M, A)
    if len(p) == 0:
        return MetricSet(count=0, mae=[None] * channels, mse=[None] * channels, rmse=[None] * channels,
                         direction_accuracy=[None] * channels, success=None)
    error = p - t
    mse = (error**2).mean(axis=0)
    return MetricSet(
        count=len(p),
        mae=_listed(np.abs(error).mean(axis=0)),
        mse=_listed(mse),
        rmse=_listed(np.sqrt(mse)),
        direction_accuracy=_listed((direction(p, dead_band) == direction(t, dead_band)).mean(axis=0)),
        success=float((np.abs(error) <= tolerance).all(axis=1).mean()),
    )


VALUE_DECIMALS = 6  # action values equal to this many decimals are one value


def baseline_actions(train_actions: np.ndarray) -> dict[Predictor, np.ndarray]:
    """Each baseline's constant action from the train split's (N, A) recorded actions: their mean, their most
    common row (the first in sorted order on a tie), and zero velocity."""
    actions = np.asarray(train_actions, np.float64)
    if actions.ndim != 2 or not len(actions):
        raise ValueError(f"the baselines need the train split's actions as (N, A) with N > 0, not {actions.shape}")
    rows, counts = np.unique(np.round(actions, VALUE_DECIMALS), axis=0, return_counts=True)
    return {Predictor.train_mean: actions.mean(axis=0), Predictor.most_common: rows[counts.argmax()] + 0.0,
            Predictor.zero_velocity: np.zeros(actions.shape[1])}


def compare(pred: np.ndarray, true: np.ndarray, mask: np.ndarray, baselines: Mapping[Predictor, Sequence[float]],
            options: EvalOptions) -> Comparison:
    """The policy and each baseline (its constant action, by predictor), for the first action of each chunk and for
    the whole chunk."""
    predictions = {Predictor.policy: np.asarray(pred)} | {
        who: np.broadcast_to(np.asarray(action, np.float64), np.shape(true)) for who, action in baselines.items()}
    spans = {Horizon.first: slice(0, 1), Horizon.chunk: slice(None)}
    return {
        horizon: {
            who: action_metrics(p[:, span], true[:, span], mask[:, span], options.tolerance, options.dead_band)
            for who, p in predictions.items()
        }
        for horizon, span in spans.items()
    }


def level_confusion(pred: np.ndarray, true: np.ndarray, mask: np.ndarray, levels: list[float]) -> LevelConfusion:
    """(N,) predicted and recorded values of one channel (only where ``mask``), each taken as its nearest level
    -> the counts of recorded level x predicted level."""
    grid = np.asarray(levels, np.float64)

    def nearest(values: np.ndarray) -> np.ndarray:
        return np.abs(np.asarray(values, np.float64)[:, None] - grid[None]).argmin(1)

    counts = np.zeros((len(grid), len(grid)), np.int64)
    np.add.at(counts, (nearest(true[mask]), nearest(pred[mask])), 1)
    return LevelConfusion(levels=[float(v) for v in grid], counts=counts.tolist())
