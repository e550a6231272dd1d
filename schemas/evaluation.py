"""`vla-data eval`: its options and ``metrics.json``, the report it writes (see README, "Evaluation").

Every metric is in physical units (the checkpoint's stats undo the normalisation) and counts only
unmasked actions: an action past the episode's end is padding and never scored. Each figure of the policy
stands beside the same figure of three baselines that need no model: the train split's mean action, its most
common action (for teleop data, the key the operator holds most), and standing still (zero velocity).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.recorder import ColorOrder
from schemas.history import DataPin, VersionChange
from schemas.store import Split
from schemas.train import Precision


class Horizon(StrEnum):
    first = "first"  # the first action of each chunk: what the robot executes next
    chunk = "chunk"  # every unmasked action of each chunk


class Predictor(StrEnum):
    policy = "policy"
    train_mean = "train_mean"  # the mean action of the store's train split, at every step
    most_common = "most_common"  # the train split's most common action (all channels together), at every step
    zero_velocity = "zero_velocity"  # standing still


class EvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: Split = Field(Split.val, description="The store split to evaluate on.")
    tolerance: float = Field(
        0.1, gt=0, description="success@tol: an action succeeds when every channel is within tol of the truth."
    )
    dead_band: float = Field(
        0.05, ge=0, description="Direction accuracy: |value| below this counts as 'no motion' (sign 0)."
    )
    plot_episodes: int = Field(
        4, ge=0, description="Episodes drawn in trajectories.png (the first of the split, those with recorded actions first)."
    )
    batch_size: int = Field(64, ge=1, description="Frames per backbone call.")
    precision: Precision = Field(Precision.fp32, description="The backbone's precision (bf16, or fp16 on CUDA); "
                                 "other than fp32, the chunks are also computed in fp32 and the largest difference "
                                 "reported.")
    compile: bool = Field(False, description="Compile the backbone with CUDA graphs (CUDA only; else eager).")
    allow_train_overlap: bool = Field(False, description="Score a split that holds episodes the checkpoint trained "
                                      "on (by content), knowingly; otherwise that is refused.")


class MetricSet(BaseModel):
    """One predictor's figures over a set of actions; ``None`` where no unmasked action exists."""

    count: int = Field(description="Unmasked actions scored.")
    mae: list[float | None] = Field(description="Per channel, mean |pred - true|.")
    mse: list[float | None] = Field(description="Per channel, mean (pred - true)^2.")
    rmse: list[float | None] = Field(description="Per channel, sqrt(mse).")
    direction_accuracy: list[float | None] = Field(
        description="Per channel, share of actions whose sign (0 inside the dead band) matches the truth's."
    )
    success: float | None = Field(description="Share of actions with every channel within the tolerance.")


Comparison = dict[Horizon, dict[Predictor, MetricSet]]


class LevelConfusion(BaseModel):
    """A discrete head's first actions of one channel, each value taken as its nearest level."""

    levels: list[float] = Field(description="The channel's levels (physical units), in order.")
    counts: list[list[int]] = Field(description="counts[recorded][predicted]: anchors whose recorded first action "
                                    "is level `recorded` and whose predicted one is level `predicted`.")


class EvalReport(BaseModel):
    """``metrics.json``."""

    tool_version: str
    checkpoint: str
    step: int
    store: str
    data: DataPin | None = Field(None, description="The exact store version scored.")
    trained_on: DataPin | None = Field(None, description="The store version the checkpoint trained on, as it records.")
    changed_since_trained: VersionChange | None = Field(
        None, description="Of the same store: what changed from the version trained on to the one scored.")
    trained_episodes_scored: list[str] = Field(
        default_factory=list, description="Scored episodes the checkpoint trained on (allow_train_overlap).")
    overlap_checked: bool = Field(True, description="False: the version trained on could not be read, so the "
                                  "scored split was not checked for training episodes.")
    options: EvalOptions
    action_names: list[str]
    cameras: list[str] = Field(default_factory=list, description="The cameras the policy read, in its order.")
    n_episodes: int
    n_anchors: int
    train_mean: list[float] = Field(description="The train-mean baseline's action (physical units).")
    most_common: list[float] | None = Field(
        None, description="The most-common-action baseline's action: the train split's most frequent action row "
        "(physical units). On teleop data it is a real command (e.g. forward), so it is the trivial policy to beat. "
        "None in a report from before this baseline.")
    overall: Comparison
    scenarios: dict[str, Comparison] = Field(description="The same figures for each scenario of the split.")
    level_confusion: dict[str, LevelConfusion] = Field(
        default_factory=dict, description="A discrete head's per-channel confusion of levels (first action).")
    precision_max_abs_difference: list[float] | None = Field(
        None, description="With a precision other than fp32: per channel, the largest |chunk - fp32 chunk| over "
        "every anchor's whole chunk, physical units.")

    def baselines(self) -> dict[Predictor, list[float]]:
        """Each baseline's constant action (physical units), by predictor (a report from before the most-common
        baseline has two)."""
        common = {} if self.most_common is None else {Predictor.most_common: self.most_common}
        return {Predictor.train_mean: self.train_mean, **common, Predictor.zero_velocity: [0.0] * len(self.action_names)}


class PredictedStep(BaseModel):
    """One frame of `vla-data predict`: the runner's chunk and the action the operator recorded next."""

    t: int = Field(description="Frame index in the episode.")
    predicted: list[list[float]] = Field(description="(K, A) chunk, physical units; row 0 is for frame t + offset.")
    recorded: list[float] | None = Field(description="The recorded action row t + offset; null past the episode end.")


class PredictReport(BaseModel):
    """`vla-data predict --json`."""

    checkpoint: str
    episode: str
    instruction: str
    action_names: list[str]
    window: int
    chunk: int
    action_offset: int
    cameras: list[str] = Field(description="Each camera the policy read: its name, the dataset and colour order.")
    color_orders: dict[str, ColorOrder] = Field(
        description="Per camera, the channel order its frames were read in (then turned into RGB): the recorder "
        "settings' (a camera's color_order) if given, else the training camera's.")
    first_action_mae: list[float | None] = Field(description="Per channel, over the frames with a recorded action.")
    warnings: list[str] = Field(default_factory=list, description="What may make the predictions worse than eval's.")
    steps: list[PredictedStep]
