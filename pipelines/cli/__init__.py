"""The `vla-data` command line. Exit codes: 0 success, 1 the data has errors, 2 usage errors.

One module per family of commands (``data``: make-synthetic, validate; ``store``: build-splits, info, gc,
inspect-sample; ``history``: log, tag; ``edit``: remove, relabel, resplit, restore, diff, merge; ``model``: train, eval, predict; ``robot``: view, serve, drive; ``deploy``: export; ``lerobot``: export-lerobot): each parses its flags, calls a
job in ``pipelines`` and prints. How a command ends when something stops it is ``errors``'; every flag map is
``flags``'; options several commands share are ``options``'.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from vla_data import __version__

__all__ = ["main"]

# command -> (module of this package, its click command), in the order ``--help`` lists them. A command's module
# is imported when the command runs (or --help lists it), so `vla-data` and every process a pool spawns, which
# imports this package again, start without the jobs' dependencies (torch, pandas, matplotlib, rerun).
COMMANDS: dict[str, tuple[str, str]] = {
    "make-synthetic": ("data", "make_synthetic_cmd"),
    "validate": ("data", "validate_cmd"),
    "build-splits": ("store", "build_splits_cmd"),
    "info": ("store", "info_cmd"),
    "gc": ("store", "gc_cmd"),
    "log": ("history", "log_cmd"),
    "tag": ("history", "tag_cmd"),
    "diff": ("edit", "diff_cmd"),
    "remove": ("edit", "remove_cmd"),
    "relabel": ("edit", "relabel_cmd"),
    "resplit": ("edit", "resplit_cmd"),
    "restore": ("edit", "restore_cmd"),
    "merge": ("edit", "merge_cmd"),
    "inspect-sample": ("store", "inspect_sample_cmd"),
    "train": ("model", "train_cmd"),
    "eval": ("model", "eval_cmd"),
    "predict": ("model", "predict_cmd"),
    "view": ("robot", "view_cmd"),
    "serve": ("robot", "serve_cmd"),
    "drive": ("robot", "drive_cmd"),
    "export": ("deploy", "export_cmd"),
    "export-lerobot": ("lerobot", "export_lerobot_cmd"),
}


class Commands(click.Group):
    """Every command ends in a message, never a traceback: Ctrl-C exits 130 with one line, a refusal or an OS error
    (a full disk, a read-only folder) exits 1 naming what and where (``errors.ENDINGS``). Commands load lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name]
        return getattr(import_module(f"pipelines.cli.{module}"), name)

    def main(self, args: list[str] | None = None, *rest: object, **options: object) -> object:
        from vla_data.common.invocation import set_command

        set_command(list(sys.argv[1:] if args is None else args))  # what a version's history records
        return super().main(args, *rest, **options)

    def invoke(self, ctx: click.Context) -> object:
        import warnings

        from pipelines.cli.errors import reported

        warnings.showwarning = _one_line  # a warning is one line on stderr, not a source excerpt
        with reported():
            return super().invoke(ctx)


def _one_line(message: Warning | str, category: type[Warning], *rest: object, **options: object) -> None:
    click.echo(click.style(f"warning: {message}", fg="yellow"), err=True)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="vla-data")
def main() -> None:
    """vla-data: from recorded robot episodes (HDF5) to a fine-tuned vision-language-action policy.

    \b
    The path of the data:
      recorder episodes --validate--> report
      recorder episodes --build-splits--> dataset.zarr --train--> checkpoint --eval/predict
    """
