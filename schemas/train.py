"""The train config (one pydantic model, from CLI flags and/or a YAML/JSON file) and the checkpoint metadata.

A run directory holds ``train_config.json`` (this config as used), ``log.jsonl``, TensorBoard events and
``checkpoint-STEP/`` folders; ``schemas.train.CheckpointMeta`` describes each checkpoint.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.sample import Augment, Batching, BatchingConfig, MirrorRule, WindowSpec
from schemas.history import DataPin
from schemas.store import ActionSelection, Feature, FeatureKind, NormStats, Preprocessing, Split, legacy_cameras

TINY_RANDOM = "tiny-random"
CHECKPOINT_FORMAT = 3  # 2: the action channels (ActionSelection), not only their names; 3: the cameras
READABLE_CHECKPOINTS = (2, 3)  # format 2 had one camera, `rgb`, its colour order in the preprocessing
# a run folder's files (beside its checkpoints): the whole TrainConfig, one JSON line per logged step, the summary
CONFIG_FILE, LOG_FILE, SUMMARY_FILE = "train_config.json", "log.jsonl", "summary.json"
# LoRA on the attention projections of the vision and text towers (not the image-to-text resampler).
ATTENTION_PROJECTIONS = r".*(vision_model|text_model)\..*self_attn\.(q_proj|k_proj|v_proj|out_proj)"


class Precision(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"  # CUDA only; gradients scaled, and the scaler steps only when gradients exist
    fp32 = "fp32"


class HistoryHead(StrEnum):
    lstm = "lstm"  # an LSTM over the W frame features
    mlp = "mlp"  # each step from its own frame feature (no history), a 2-layer MLP


class ActionHead(StrEnum):
    regression = "regression"  # a value per channel and chunk step, Huber loss
    discrete = "discrete"  # logits over each channel's levels, cross-entropy (vla_model.heads)


class Readout(StrEnum):
    expected = "expected"  # a discrete head's value: the expected value over the levels
    most_likely = "most-likely"  # ... or the most likely level


class Schedule(StrEnum):
    cosine = "cosine"
    constant = "constant"


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="The dataset store (vla-data build-splits).")
    train_split: Split = Split.train
    val_split: Split = Split.val
    window: WindowSpec = WindowSpec()
    augment: Augment = Augment.none
    mirror: MirrorRule = Field(MirrorRule(), description="What augment=mirror negates and which side words it swaps.")
    batching: BatchingConfig = BatchingConfig()
    workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    memory_budget: int | None = Field(None, ge=0, description="Bytes of decoded frames held in memory per split.")


class LoraConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(32, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    targets: str = Field(ATTENTION_PROJECTIONS, description="Regex over module names (peft target_modules).")


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        TINY_RANDOM,
        description="'tiny-random' (built in code, for tests and the demo), a Hugging Face hub id already in the "
        "local cache, or a local directory. Nothing is ever downloaded.",
    )
    history: HistoryHead = HistoryHead.lstm
    head: ActionHead = Field(ActionHead.regression, description="regression: a value per action channel and "
                             "chunk step (Huber); discrete: logits over each channel's levels (cross-entropy).")
    bins: int = Field(16, ge=2, le=256, description="A discrete head's levels of a channel with more distinct values "
                      "in the train split than this: that many quantile bins.")
    readout: Readout = Field(Readout.expected, description="A discrete head's action: the expected value over the "
                             "levels, or the most likely level.")
    hidden: int = Field(512, ge=1, description="Width of the history head.")
    gradient_checkpointing: bool = False
    resize_on_device: bool = Field(
        False,
        description="Resize the store's frames to the backbone's input size on the device, every step, when the "
        "two differ; otherwise a store of another image size is refused (build it at the backbone's size).",
    )
    frozen_fp32: bool = Field(
        False,
        description="Keep the frozen backbone weights in fp32 when training in bf16 (autocast then casts them on "
        "every forward). Default: they are held in bf16, saving half their memory; LoRA weights, heads and the "
        "optimizer state stay fp32 either way.",
    )
    lora: LoraConfigModel = LoraConfigModel()


class OptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-4, gt=0)
    head_lr: float | None = Field(None, gt=0, description="Learning rate of the action query and heads [default: lr].")
    weight_decay: float = Field(0.01, ge=0)
    schedule: Schedule = Schedule.cosine
    warmup_steps: int = Field(0, ge=0)
    max_steps: int = Field(1000, ge=1, description="Optimiser steps (each one batch_size x accumulation samples).")
    batch_size: int = Field(8, ge=1, description="Samples per process per micro-batch.")
    accumulation: int = Field(1, ge=1, description="Micro-batches per optimiser step.")
    precision: Precision = Precision.fp32
    max_grad_norm: float = Field(1.0, gt=0)
    huber_delta: float = Field(1.0, gt=0)
    seed: int = 0


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log_every: int = Field(10, ge=1)
    val_every: int = Field(100, ge=1, description="Validation loss on the val split every N steps (and at the end).")
    val_batches: int | None = Field(None, ge=1, description="Batches of the val split per validation [default: all].")
    save_every: int = Field(500, ge=1)
    keep_last: int = Field(2, ge=1, description="Checkpoints kept besides the best by val loss.")


class TrainConfig(BaseModel):
    """Everything a training run is asked to do; saved as ``train_config.json`` in the run directory."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _splits_differ(self) -> TrainConfig:
        if self.data.train_split == self.data.val_split:
            raise ValueError(f"train and val split are both {self.data.train_split.value}")
        batching, batch = self.data.batching, self.optim.batch_size
        if batching.mode == Batching.segments and batch % batching.segment_length:
            raise ValueError(f"batch_size {batch} is not a multiple of segment_length {batching.segment_length}: a "
                             "segment batch is batch_size / segment_length segments")
        return self


class BackboneSpec(BaseModel):
    """How to rebuild the frozen backbone a checkpoint's adapter belongs to."""

    source: str
    config: dict[str, Any] = Field(description="The Kosmos-2 config (to_dict), to check the weights found match.")


class CheckpointMeta(BaseModel):
    """``checkpoint.json``: everything besides the weights that inference needs, without the store."""

    format_version: int = CHECKPOINT_FORMAT
    tool_version: str
    step: int
    val_loss: float | None
    train_config: TrainConfig
    backbone: BackboneSpec
    preprocessing: Preprocessing
    actions: ActionSelection = Field(description="The recorder channels the policy predicts, and their names, in order.")
    cameras: list[Feature] = Field(
        min_length=1, description="The cameras the policy reads, in its order: name, source key, colour order.")
    stats: NormStats
    source_frame_sizes: list[str] = Field(
        default_factory=list, description="Frame sizes (HxW) of the training store's sources, before resizing."
    )
    files: dict[str, str] = Field(description="sha256 of every weight file in the checkpoint, by name.")
    data: DataPin | None = Field(None, description="The store version the run trained on (None: an older checkpoint).")
    action_levels: list[list[float]] | None = Field(
        None, description="A discrete head's levels per action channel, physical units (None: a regression head).")

    @model_validator(mode="before")
    @classmethod
    def _one_camera(cls, data: Any) -> Any:
        """A format-2 checkpoint read one camera, ``rgb``, in the colour order its preprocessing recorded."""
        if isinstance(data, dict) and "cameras" not in data and "preprocessing" in data:
            data = {**data, "cameras": legacy_cameras(data["preprocessing"])}
        return data

    @model_validator(mode="after")
    def _cameras_are_cameras(self) -> CheckpointMeta:
        if any(f.kind != FeatureKind.camera for f in self.cameras):
            raise ValueError("checkpoint cameras must be camera features")
        return self

    @property
    def camera_names(self) -> list[str]:
        return [f.name for f in self.cameras]

    @property
    def action_names(self) -> list[str]:
        return list(self.actions.names)
