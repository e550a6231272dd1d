"""Every map between the CLI's flags and the settings they set, and how the CLI words a refusal's fix with them.

A flag maps onto a field of a pydantic settings model (``pipelines.cli.options.model_flags`` makes the click
options from a map, typed and documented by the fields). A refusal from a lower layer names its fix by setting
(``schemas.fixes.Fix``, of a refusal or a validation finding); the CLI says it as the flag that sets it: build
settings are ``BuildOptions`` fields, train settings ``TrainConfig`` paths (``TRAIN_FLAGS``), recorder settings
``RecorderSettings`` paths (``camera.key`` the one camera's, ``cameras[NAME].key`` one of several).
"""

from __future__ import annotations

import re
from typing import Any

import click

from schemas.bags import EpisodeCut, StampSource
from schemas.evaluation import EvalOptions
from schemas.findings import Finding
from schemas.fixes import Fix, as_setting
from schemas.view import ViewOptions
from vla_data.common.refusal import Refusal

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
    "head": ("model", "head"),
    "bins": ("model", "bins"),
    "readout": ("model", "readout"),
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
                                          "max_message_mb", "any_frame")}
EXPORT_FLAGS = {name: (name,) for name in ("opset", "precision", "max_words", "min_cosine", "max_chunk_error")}
LEROBOT_FLAGS = {name: (name,) for name in ("fps", "robot_type", "repo_id", "action_offset", "video_crf")}
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
    "camera.key": "--frames-key",
    "camera.topic": "--camera-topic",
    "bag.command_timeout_s": "--command-timeout",
    "bag.gap_s": "--gap",
    **{".".join(path): "--" + flag.replace("_", "-") for flag, path in TRAIN_FLAGS.items()},
}
TURNED_OFF_BY = {"wait": "--no-wait"}  # settings on by default, whose flag turns them off
ONLY_IN = {"mirror.negate_channels": "inspect-sample"}  # settings that only this command has a flag for
CAMERA = re.compile(r"cameras\[(?P<name>[^\]]+)\]\.(?P<field>\w+)")  # one of several cameras' settings


def flag_of(setting: str) -> str:
    return FLAG_OF.get(setting, "--" + setting.rsplit(".", 1)[-1].replace("_", "-"))


def _cameras(settings: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """The settings less those of named cameras, and those as flags: ``--camera NAME=KEY[:ORDER]`` (key and
    colour order together), ``--camera-topic NAME=TOPIC``."""
    rest, given, flags = {}, {}, []
    for name, value in settings.items():
        if (m := CAMERA.fullmatch(name)) and m["field"] in ("key", "color_order", "topic"):
            given.setdefault(m["name"], {})[m["field"]] = value
        else:
            rest[name] = value
    for camera, fields in given.items():
        if "key" in fields:
            order = f":{fields['color_order']}" if "color_order" in fields else ""
            flags.append(f"--camera {camera}={fields['key']}{order}")
        if "topic" in fields:
            flags.append(f"--camera-topic {camera}={fields['topic']}")
    return rest, flags


def as_flags(fix: Fix) -> str:
    """``pass --overwrite --action-channels 0,1,2 to ...``; ``run without --no-wait to ...``; for another
    command, ``run `vla-data info d.zarr --verify` to ...``."""
    settings, give = _cameras(fix.settings)
    leave: list[str] = []
    for name, value in settings.items():
        if name in TURNED_OFF_BY:
            (leave if value is True else give).append(TURNED_OFF_BY[name])
        elif value is True:
            give.append(flag_of(name))
        elif value is False:
            leave.append(flag_of(name))
        else:
            give.append(f"{flag_of(name)} {value}")
    if fix.command:
        words = f"run `vla-data {' '.join([fix.command, *give])}`"
    else:
        words = " and ".join(part for part in (f"pass {' '.join(give)}" if give else "",
                                               f"run without {', '.join(leave)}" if leave else "") if part)
    return f"{words}{' ' + fix.effect if fix.effect else ''}"


def _here(fix: Fix) -> str:
    """``as_flags``, unless the running command has no flag for one of the settings: then the setting itself."""
    ctx = click.get_current_context(silent=True)
    # inside a command its own context; in the group's error path (errors.reported) the group's, naming it
    command = (ctx.invoked_subcommand or ctx.info_name) if ctx is not None else None
    if command is not None and not fix.command and any(ONLY_IN.get(s, command) != command for s in fix.settings):
        return as_setting(fix)
    return as_flags(fix)


def worded(problem: Exception | str) -> str:
    """A refusal with its fixes as flags; anything else as it says itself."""
    return problem.worded(_here) if isinstance(problem, Refusal) else str(problem)


def worded_hint(finding: Finding) -> str:
    """A finding's hint with its fixes as flags."""
    return finding.worded_hint(_here)
