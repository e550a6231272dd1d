"""CLI options shared by several commands, each mapped onto a field of a pydantic settings model."""

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

from schemas import ColorOrder, RecorderSettings
from schemas.sample import WindowSpec

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def recorder_options(fn: F) -> F:
    """Flags for ``RecorderSettings``; each overrides the same field of ``--recorder-config``."""
    fields = RecorderSettings.model_fields
    options = [
        click.option(
            "--recorder-config",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="YAML or JSON file with recorder settings (the keys below, with underscores); flags override it.",
        ),
        click.option("--frames-key", help=f"{fields['frames_key'].description} [default: images]"),
        click.option("--actions-key", help=f"{fields['actions_key'].description} [default: actions]"),
        click.option(
            "--instruction-key", help=f"{fields['instruction_key'].description} [default: language_instruction]"
        ),
        click.option(
            "--color-order",
            type=click.Choice([c.value for c in ColorOrder]),
            help=f"{fields['color_order'].description} [default: bgr]",
        ),
        click.option("--action-dim", type=int, help=f"{fields['action_dim'].description} [default: 3]"),
        click.option("--action-bound", type=float, help=f"{fields['action_bound'].description} [default: 1.5]"),
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
    """Validate user input into ``model``; a failure is a usage error naming each bad field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or what}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise click.UsageError(f"invalid {what}: {problems}") from exc


def recorder_settings(recorder_config: Path | None, **flags: Any) -> RecorderSettings:
    values = load_settings_file(recorder_config)
    values.update({k: v for k, v in flags.items() if v is not None})
    return build_model(RecorderSettings, values, "recorder settings")


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
