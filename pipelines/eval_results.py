"""What `vla-data eval` computes per episode and how it names its predictors: shared by the scoring
(``pipelines.evaluate``) and the figures (``pipelines.eval_plots``), so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.evaluation import Predictor

LABELS = {Predictor.policy: "policy", Predictor.train_mean: "train-mean", Predictor.most_common: "most-common",
          Predictor.zero_velocity: "zero"}


@dataclass
class EpisodeResult:
    """Every scored anchor of one episode."""

    episode: int
    scenario: str
    instruction: str
    t: np.ndarray  # (N,) anchors
    pred: np.ndarray  # (N, K, A) physical
    true: np.ndarray  # (N, K, A) physical, zero velocity where masked
    mask: np.ndarray  # (N, K) True where the recorded action exists


def first_action_mae(result: EpisodeResult) -> float:
    """The episode's mean |predicted - recorded| first action over its scored anchors and every channel."""
    first = result.mask[:, 0]
    if not first.any():
        return 0.0
    return float(np.abs(result.pred[first, 0] - result.true[first, 0]).mean())


def worst_episodes(results: list[EpisodeResult], n: int) -> list[EpisodeResult]:
    """The ``n`` episodes of highest first-action MAE, worst first (ties in episode order)."""
    return sorted(results, key=lambda r: (-first_action_mae(r), r.episode))[:n]
