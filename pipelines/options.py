"""CLI options shared by several commands, each mapped onto a field of a pydantic settings model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from pydantic import BaseModel, ValidationError

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
    """--window, --chunk, --action-offset: the sample geometry (``schemas.sample.WindowSpec``)."""
    fields = WindowSpec.model_fields
    options = [
        click.option("--window", default=fields["window"].default, show_default=True, type=click.IntRange(min=1),
                     help=fields["window"].description),
        click.option("--chunk", default=fields["chunk"].default, show_default=True, type=click.IntRange(min=1),
                     help=fields["chunk"].description),
        click.option("--action-offset", default=fields["action_offset"].default, show_default=True,
                     type=click.IntRange(min=0), help=fields["action_offset"].description),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
