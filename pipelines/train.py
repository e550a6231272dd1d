"""`vla-data train`: flags and/or a YAML/JSON config file -> one ``TrainConfig`` -> the trainer.

Each flag maps onto one field of ``schemas.train.TrainConfig`` (``FLAGS``); a flag given on the command
line overrides the same field of ``--config``; unset fields take the model's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipelines.options import build_model, load_settings_file
from schemas.train import TrainConfig

# flag (click parameter name) -> path of the TrainConfig field it sets
FLAGS: dict[str, tuple[str, ...]] = {
    "store": ("data", "store"),
    "split": ("data", "train_split"),
    "val_split": ("data", "val_split"),
    "window": ("data", "window", "window"),
    "chunk": ("data", "window", "chunk"),
    "stride": ("data", "window", "stride"),
    "action_offset": ("data", "window", "action_offset"),
    "augment": ("data", "augment"),
    "batching": ("data", "batching", "mode"),
    "segment_length": ("data", "batching", "segment_length"),
    "workers": ("data", "workers"),
    "model": ("model", "source"),
    "history": ("model", "history"),
    "hidden": ("model", "hidden"),
    "gradient_checkpointing": ("model", "gradient_checkpointing"),
    "resize_on_device": ("model", "resize_on_device"),
    "frozen_fp32": ("model", "frozen_fp32"),
    "lora_r": ("model", "lora", "r"),
    "lora_alpha": ("model", "lora", "alpha"),
    "lora_dropout": ("model", "lora", "dropout"),
    "lora_targets": ("model", "lora", "targets"),
    "lr": ("optim", "lr"),
    "head_lr": ("optim", "head_lr"),
    "weight_decay": ("optim", "weight_decay"),
    "schedule": ("optim", "schedule"),
    "warmup_steps": ("optim", "warmup_steps"),
    "max_steps": ("optim", "max_steps"),
    "batch_size": ("optim", "batch_size"),
    "accumulation": ("optim", "accumulation"),
    "precision": ("optim", "precision"),
    "seed": ("optim", "seed"),
    "log_every": ("log", "log_every"),
    "val_every": ("log", "val_every"),
    "val_batches": ("log", "val_batches"),
    "save_every": ("log", "save_every"),
    "keep_last": ("log", "keep_last"),
}


def assemble_config(config_file: Path | None, given: dict[str, Any]) -> TrainConfig:
    """``--config`` file values, overridden by the flags actually given, validated as one TrainConfig."""
    values = load_settings_file(config_file)
    for flag, value in given.items():
        node = values
        *parents, leaf = FLAGS[flag]
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{'.'.join(parents)} in {config_file} must be a mapping")
        node[leaf] = str(value) if isinstance(value, Path) else value
    return build_model(TrainConfig, values, "train config")

