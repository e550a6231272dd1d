"""CLI options and parameter checks shared by several commands; settings options are mapped onto the fields
of pydantic settings models (the maps are in ``pipelines.cli.flags``)."""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pipelines.cli.flags import BAG_FLAGS
from pipelines.figures import require_png
from schemas import ColorOrder, RecorderSettings
from schemas.bags import BagSettings
from schemas.fixes import Refusal
from schemas.recorder import DEFAULT_CAMERA, CameraSource
from schemas.sample import WindowSpec

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def recorder_options(fn: F) -> F:
    """Flags for ``RecorderSettings``; each overrides the same field of ``--recorder-config``."""
    return _recorder_options(fn, instruction=True)


def replay_recorder_options(fn: F) -> F:
    """``recorder_options`` for a command that has its own ``--instruction`` (predict: it replaces the one found)."""
    return _recorder_options(fn, instruction=False)


def _recorder_options(fn: F, instruction: bool) -> F:
    fields, camera = RecorderSettings.model_fields, CameraSource.model_fields
    options = [
        click.option(
            "--recorder-config",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="YAML or JSON file with recorder settings (the keys below, with underscores; several cameras as "
            "`cameras: [{name: front, key: images, color_order: bgr}, ...]`); flags override it.",
        ),
        click.option(
            "--camera", "cameras", multiple=True, metavar="NAME=KEY[:ORDER]",
            help="A camera: its name in the store and the policy, the HDF5 dataset of its frames, and optionally "
            "its colour order (bgr or rgb [default: --color-order]), e.g. --camera front=images "
            "--camera rear=observations/rear_images:rgb. Repeat for each camera, in the order the policy reads "
            "them. [default: one camera, rgb=images]",
        ),
        click.option("--frames-key", help=f"{camera['key'].description} The one camera's, without --camera. "
                     "[default: images]"),
        click.option("--actions-key", help=f"{fields['actions_key'].description} [default: actions]"),
        click.option(
            "--instruction-key", help=f"{fields['instruction_key'].description} [default: language_instruction]"
        ),
        click.option(
            "--color-order",
            type=click.Choice([c.value for c in ColorOrder]),
            help=f"{camera['color_order'].description} Of every camera that names none. [default: bgr]",
        ),
        click.option("--action-dim", type=int, help=f"{fields['action_dim'].description} [default: 3]"),
        click.option("--action-bound", type=float, help=f"{fields['action_bound'].description} [default: 1.5]"),
        *([click.option("--instruction", help=fields["instruction"].description)] if instruction else []),
        click.option(
            "--camera-topic", "camera_topics", multiple=True, metavar="[NAME=]TOPIC",
            help="ROS 2 bags: a camera's topic (sensor_msgs/Image or CompressedImage); NAME=TOPIC for one of several "
            "cameras, a bare TOPIC for the next camera in order. [default: the first camera's /camera/image_raw]"),
        *[click.option("--" + flag.replace("_", "-"), name, type=kind, help=field_help(BagSettings, (name,)))
          for flag, name, kind in BAG_FLAGS],
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_settings_file(path: Path | None) -> dict[str, Any]:
    """A YAML or JSON mapping, or a usage error that says what is wrong with it."""
    if path is None:
        return {}
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--recorder-config") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping of settings", param_hint="--recorder-config")
    return data


def build_model(model: type[M], values: dict[str, Any], what: str) -> M:
    """Validate user input into ``model``; a failure is a usage error naming each bad field (a validator's
    refusal with its fixes as flags)."""
    from pipelines.cli.flags import worded  # flags reads options (the train flags), which import this module

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or what}: "
            + (worded(refusal) if isinstance(refusal := (err.get("ctx") or {}).get("error"), Refusal) else err["msg"])
            for err in exc.errors(include_url=False)
        )
        raise click.UsageError(f"invalid {what}: {problems}") from exc


def parse_camera(text: str, default_order: str | None) -> dict[str, str]:
    """``NAME=KEY[:ORDER]`` as the fields of a ``CameraSource`` (a usage error saying the form otherwise)."""
    name, sep, rest = text.partition("=")
    key, order = rest, default_order
    head, colon, tail = rest.rpartition(":")
    if colon and tail.lower() in {c.value for c in ColorOrder}:
        key, order = head, tail.lower()
    if not sep or not name.strip() or not key.strip():
        raise click.BadParameter(f"{text!r} is not NAME=KEY[:ORDER], e.g. front=images or rear=observations/rear:rgb",
                                 param_hint="--camera")
    return {"name": name.strip(), "key": key.strip()} | ({"color_order": order} if order else {})


def recorder_settings(recorder_config: Path | None, cameras: tuple[str, ...] = (), **flags: Any) -> RecorderSettings:
    """The settings file's values, each overridden by the flag given for it. ``--camera`` replaces the file's
    cameras; without it ``--frames-key`` / ``--color-order`` describe the one camera."""
    values = load_settings_file(recorder_config)
    frames_key, color_order = flags.pop("frames_key", None), flags.pop("color_order", None)
    topics: tuple[str, ...] = flags.pop("camera_topics", ())
    bag = {name: flags.pop(flag) for flag, name, _ in BAG_FLAGS if flags.get(flag) is not None}
    for flag, _, _ in BAG_FLAGS:
        flags.pop(flag, None)
    if isinstance(bag.get("command_fields"), str):
        bag["command_fields"] = [f.strip() for f in bag["command_fields"].split(",") if f.strip()]
    if bag:
        values["bag"] = {**(values.get("bag") or {}), **bag}
    values.update({k: v for k, v in flags.items() if v is not None})
    if cameras:
        if frames_key is not None:
            raise click.UsageError("--frames-key names the one camera's frames; with --camera give each camera's "
                                   "key there (NAME=KEY)")
        values.pop("frames_key", None)
        values.pop("color_order", None)
        values["cameras"] = [parse_camera(c, color_order) for c in cameras]
    elif frames_key is not None or color_order is not None:
        if "cameras" in values and len(values["cameras"]) > 1:
            raise click.UsageError("--frames-key and --color-order describe one camera, and the recorder config "
                                   "lists several: give them as --camera NAME=KEY:ORDER")
        one = dict(values.pop("cameras", [{}])[0]) if "cameras" in values else {}
        if "frames_key" in values:
            one["key"] = values.pop("frames_key")
        if "color_order" in values:
            one["color_order"] = values.pop("color_order")
        one |= {k: v for k, v in (("key", frames_key), ("color_order", color_order)) if v is not None}
        values["cameras"] = [one]
    if topics:
        values["cameras"] = _with_topics(list(values.get("cameras") or [{}]), topics)
    return build_model(RecorderSettings, values, "recorder settings")


def _with_topics(cameras: list[Any], topics: tuple[str, ...]) -> list[dict[str, Any]]:
    """The cameras with ``--camera-topic`` applied: NAME=TOPIC to the camera of that name, a bare TOPIC to the
    next camera in order."""
    out = [dict(c) if isinstance(c, dict) else c.model_dump() for c in cameras]
    names = [c.get("name", DEFAULT_CAMERA) for c in out]
    bare = 0
    for text in topics:
        name, sep, topic = text.partition("=")
        if sep:
            if name not in names:
                raise click.BadParameter(f"{text!r}: no camera named {name!r}; the cameras are {', '.join(names)}",
                                         param_hint="--camera-topic")
            out[names.index(name)]["topic"] = topic.strip()
            continue
        if bare >= len(out):
            raise click.BadParameter(f"{len(topics)} topics for {len(out)} camera(s): give one per camera "
                                     "(NAME=TOPIC)", param_hint="--camera-topic")
        out[bare]["topic"] = text.strip()
        bare += 1
    return out


def window_options(fn: F) -> F:
    """--window, --chunk, --action-offset: the sample geometry, handed to the command whole as its ``spec``
    parameter (a ``schemas.sample.WindowSpec``; stride keeps its default). Defaults and help are WindowSpec's."""
    fields = WindowSpec.model_fields

    @functools.wraps(fn)
    def command(*args: Any, window: int, chunk: int, action_offset: int, **kwargs: Any) -> Any:
        return fn(*args, spec=WindowSpec(window=window, chunk=chunk, action_offset=action_offset), **kwargs)

    options = [
        click.option("--window", default=fields["window"].default, show_default=True, type=click.IntRange(min=1),
                     help=fields["window"].description),
        click.option("--chunk", default=fields["chunk"].default, show_default=True, type=click.IntRange(min=1),
                     help=fields["chunk"].description),
        click.option("--action-offset", default=fields["action_offset"].default, show_default=True,
                     type=click.IntRange(min=0), help=fields["action_offset"].description),
    ]
    for option in reversed(options):
        command = option(command)
    return command  # type: ignore[return-value]


def model_field(root: type[BaseModel], path: tuple[str, ...]) -> FieldInfo:
    """The field of ``root`` at ``path`` (nested models followed by name)."""
    model: Any = root
    field = None
    for part in path:
        field = model.model_fields[part]
        model = field.annotation
    assert field is not None
    return field


def field_type(root: type[BaseModel], path: tuple[str, ...]) -> type:
    """The field's type without ``| None`` (int, float, bool, str or a StrEnum)."""
    annotation = model_field(root, path).annotation
    options = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    return options[0]


def field_help(root: type[BaseModel], path: tuple[str, ...]) -> str:
    """The field's description and default, for --help."""
    field = model_field(root, path)
    shown = getattr(field.default, "value", field.default)
    if isinstance(shown, tuple):
        shown = ",".join(map(str, shown))
    default = "" if field.is_required() or shown is None else f" [default: {shown}]"
    return f"{field.description or ''}{default}".strip()


def model_flags(root: type[BaseModel], flags: dict[str, tuple[str, ...]]) -> Callable[[F], F]:
    """One click option per ``flags`` entry (parameter name -> field path of ``root``), typed and documented
    by the field. Every option defaults to None, so a command can tell the flags actually given."""

    def decorate(fn: F) -> F:
        for flag in reversed(list(flags)):
            name, kind, help_text = "--" + flag.replace("_", "-"), field_type(root, flags[flag]), field_help(root, flags[flag])
            if kind is bool:
                fn = click.option(name, is_flag=True, default=None, help=help_text)(fn)
            elif issubclass(kind, enum.Enum):
                fn = click.option(name, type=click.Choice([c.value for c in kind]), help=help_text)(fn)
            else:
                fn = click.option(name, type=kind, help=help_text)(fn)
        return fn

    return decorate


# -- paths and options several commands share --------------------------------------------------------------------
DEVICE_HELP = "cpu, cuda, cuda:1, ... [default: cuda when available, else cpu]"
backbone_option = click.option(
    "--model", "model", default=None, metavar="SOURCE",
    help="Where the backbone is now (a directory, a cached hub id, tiny-random), when not where the checkpoint "
         "records it (another machine, a moved folder); it must have the trained backbone's shapes.")


def png_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    try:
        return None if value is None else require_png(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def rrd_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A Rerun recording to write: a .rrd file (its folder is checked when it is written: eval creates its -o)."""
    if value is not None and value.suffix != ".rrd":
        raise click.BadParameter(f"{value}: a Rerun recording is a .rrd file (e.g. {value.with_suffix('.rrd')})")
    return value


def source_paths(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[Path, ...]:
    """Sources that exist (files, folders, bags, LeRobot datasets; BAG#k, DIR#k), and hf://datasets/ORG/NAME: a
    LeRobot dataset already in this machine's caches (nothing is downloaded)."""
    from vla_data.sources.formats import source_exists
    from vla_data.sources.lerobot import HUB_PREFIX, SourceError, cached_dataset

    try:
        paths = [cached_dataset(given) if given.startswith(HUB_PREFIX) else Path(given) for given in value]
    except SourceError as exc:
        raise click.BadParameter(str(exc)) from None
    missing = [str(p) for p in paths if not source_exists(p)]
    if missing:
        raise click.BadParameter(f"{', '.join(missing)}: does not exist (an HDF5 episode, a folder, a bag, a LeRobot "
                                 "dataset, BAG#k or DIR#k)")
    return tuple(paths)


def episode_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """An episode file or bag that exists, or BAG#k: the k-th episode of a bag cut into several."""
    from vla_data.sources.formats import source_exists

    if not source_exists(value):
        raise click.BadParameter(f"{value} does not exist (an HDF5 episode, a bag, or BAG#k of a cut bag)")
    return value
