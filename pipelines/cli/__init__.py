"""The `vla-data` command line. Exit codes: 0 success, 1 the data has errors, 2 usage errors.

One module per family of commands (``data``: make-synthetic, validate; ``store``: build-splits, info, gc,
inspect-sample; ``model``: train, eval, predict; ``robot``: view, serve, drive): each parses its flags, calls a
job in ``pipelines`` and prints. How a command ends when something stops it is ``errors``'; every flag map is
``flags``'; options several commands share are ``options``'.
"""

from __future__ import annotations

import click

from pipelines.cli import data, model, robot, store
from pipelines.cli.errors import reported
from vla_data import __version__

__all__ = ["main"]


class Commands(click.Group):
    """Every command ends in a message, never a traceback: Ctrl-C exits 130 with one line, a refusal or an OS error
    (a full disk, a read-only folder) exits 1 naming what and where (``errors.ENDINGS``)."""

    def invoke(self, ctx: click.Context) -> object:
        with reported():
            return super().invoke(ctx)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="vla-data")
def main() -> None:
    """vla-data: from recorded robot episodes (HDF5) to a fine-tuned vision-language-action policy.

    \b
    The path of the data:
      recorder episodes --validate--> report
      recorder episodes --build-splits--> dataset.zarr --train--> checkpoint --eval/predict
    """


for command in (data.make_synthetic_cmd, data.validate_cmd, store.build_splits_cmd, store.info_cmd, store.gc_cmd,
                store.inspect_sample_cmd, model.train_cmd, model.eval_cmd, model.predict_cmd, robot.view_cmd,
                robot.serve_cmd, robot.drive_cmd):
    main.add_command(command)
