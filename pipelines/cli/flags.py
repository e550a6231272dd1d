"""Every map between the CLI's flags and the settings they set, and how the CLI words a refusal's fix with them.

A flag maps onto a field of a pydantic settings model (``pipelines.cli.options.model_flags`` makes the click
options from a map, typed and documented by the fields). A refusal from a lower layer names its fix by setting
(``vla_data.common.refusal.Fix``); the CLI says it as the flag that sets it: build settings are ``BuildOptions``
fields, train settings ``TrainConfig`` paths (``TRAIN_FLAGS``).
"""

from __future__ import annotations

from typing import Any

import click

from schemas.bags import EpisodeCut, StampSource
from schemas.evaluation import EvalOptions
from schemas.view import ViewOptions
from vla_data.common.refusal import Fix, Refusal

# train: flag (click parameter name) -> path of the TrainConfig field it sets
TRAIN_FLAGS: dict[str, tuple[str, ...]] = {
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
# eval, view, serve: flag -> field of EvalOptions, ViewOptions (--episode is its own option), ServeConfig
EVAL_FLAGS = {name: (name,) for name in EvalOptions.model_fields}
VIEW_FLAGS = {name: (name,) for name in ViewOptions.model_fields if name != "episodes"}
SERVE_FLAGS = {name: (name,) for name in ("host", "port", "precision", "compile", "token_file", "insecure",
                                          "max_message_mb")}
# ROS 2 bag flags of every command that reads recorder episodes: flag, BagSettings field, click type
BAG_FLAGS: list[tuple[str, str, Any]] = [
    ("command_topic", "command_topic", str),
    ("command_fields", "command_fields", str),
    ("instruction_topic", "instruction_topic", str),
    ("stamp", "stamp", click.Choice([s.value for s in StampSource])),
    ("command_timeout", "command_timeout_s", float),
    ("fps", "fps", float),
    ("cut", "cut", click.Choice([c.value for c in EpisodeCut])),
    ("events_topic", "events_topic", str),
    ("gap", "gap_s", float),
]

# setting path -> flag, where the flag is not the setting's own name with dashes
FLAG_OF: dict[str, str] = {
    "preprocessing.image_size": "--image-size",
    "mirror.negate_channels": "--negate-channels",  # inspect-sample's; train's is data.mirror.negate_channels
    **{".".join(path): "--" + flag.replace("_", "-") for flag, path in TRAIN_FLAGS.items()},
}
TURNED_OFF_BY = {"wait": "--no-wait"}  # settings on by default, whose flag turns them off


def flag_of(setting: str) -> str:
    return FLAG_OF.get(setting, "--" + setting.rsplit(".", 1)[-1].replace("_", "-"))


def as_flags(fix: Fix) -> str:
    """``pass --overwrite --action-channels 0,1,2 to ...``; ``run without --no-wait to ...``."""
    give, leave = [], []
    for name, value in fix.settings.items():
        if name in TURNED_OFF_BY:
            (leave if value is True else give).append(TURNED_OFF_BY[name])
        elif value is True:
            give.append(flag_of(name))
        elif value is False:
            leave.append(flag_of(name))
        else:
            give.append(f"{flag_of(name)} {value}")
    words = " and ".join(part for part in (f"pass {' '.join(give)}" if give else "",
                                           f"run without {', '.join(leave)}" if leave else "") if part)
    return f"{words}{' ' + fix.effect if fix.effect else ''}"


def worded(problem: Exception | str) -> str:
    """A refusal with its fixes as flags; anything else as it says itself."""
    return problem.worded(as_flags) if isinstance(problem, Refusal) else str(problem)
