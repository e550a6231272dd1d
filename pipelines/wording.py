"""How the CLI words a fix (``schemas.fixes.Fix``, of a refusal or a validation finding): each setting a lower
layer names as the flag that sets it. Build settings are ``BuildOptions`` fields, train settings ``TrainConfig``
paths (``FLAGS``), recorder settings ``RecorderSettings`` paths (``camera.key`` the one camera's,
``cameras[NAME].key`` one of several)."""

from __future__ import annotations

import re

import click

from pipelines.train import FLAGS as TRAIN_FLAGS
from schemas.findings import Finding
from schemas.fixes import Fix, as_setting
from vla_data.common.refusal import Refusal

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
    command = ctx.info_name if ctx is not None else None
    if command is not None and not fix.command and any(ONLY_IN.get(s, command) != command for s in fix.settings):
        return as_setting(fix)
    return as_flags(fix)


def worded(problem: Exception | str) -> str:
    """A refusal with its fixes as flags; anything else as it says itself."""
    return problem.worded(_here) if isinstance(problem, Refusal) else str(problem)


def worded_hint(finding: Finding) -> str:
    """A finding's hint with its fixes as flags."""
    return finding.worded_hint(_here)
