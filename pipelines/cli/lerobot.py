"""`vla-data export-lerobot`: a store version as a LeRobotDataset v3.0 folder."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.errors import fail
from pipelines.cli.flags import LEROBOT_FLAGS
from pipelines.cli.options import build_model, model_flags
from schemas.lerobot import FrameStorage, LeRobotExportOptions


@click.command("export-lerobot")
@click.argument("store", metavar="STORE[@VERSION]")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="The dataset folder to write: new, empty, or one export-lerobot wrote (replaced whole). It "
                   "appears whole, or not at all.")
@click.option("--video/--images", "video", default=False,
              help="Frames as one AV1 mp4 per camera (LeRobot's default: small, lossy; needs vla-data[lerobot]) or "
                   "as PNG images in the data files (exact) [default: --images].")
@model_flags(LeRobotExportOptions, LEROBOT_FLAGS)
def export_lerobot_cmd(store: str, out: Path, video: bool, **flags: object) -> None:
    """Export a store version as a LeRobotDataset v3.0, for LeRobot's policies and tools.

    \b
    The mapping:
      episodes   train first, then val, then test; info.json's `splits` gives each split's episode range
                 (LeRobot's loader selects episodes by index: LeRobotDataset(..., episodes=[...]))
      cameras    the store's camera NAME is observation.images.NAME, frames as the store holds them (RGB, S x S)
      action     at frame t, the store's row t + --action-offset: the command sent after seeing frame t
                 (LeRobot's convention); an episode's last frames, with no row after them, get zero velocity
      tasks      the instructions
      stats      meta/stats.json over the train split's frames only
    meta/vla_data.json records the store version exported and every episode's store id, split and content hash;
    meta/splits.csv gives each episode's split as build-splits --split-file reads it.
    HDF5 recordings carry no clock: give --fps (bags give their own).

    \b
    Load it with LeRobot:
      LeRobotDataset("local/vla-data", root="DIR")

    \b
    Examples:
      vla-data export-lerobot dataset.zarr -o lerobot-ds --fps 10
      vla-data export-lerobot dataset.zarr@v2 -o lerobot-video --fps 10 --video --robot-type turtlebot4
    """
    given = {k: v for k, v in flags.items() if v is not None}
    options = build_model(LeRobotExportOptions, given | {"storage": FrameStorage.video if video else FrameStorage.images},
                          "export-lerobot options")
    if video:
        from vla_data.sources.lerobot import require_av

        try:
            require_av()  # before any work
        except ImportError as exc:
            fail(str(exc))
    from pipelines.export_lerobot import export_lerobot

    export = export_lerobot(store, out, options, lambda line: click.echo(line, err=True))
    click.echo(f"wrote {out}: {len(export.episodes)} episodes of {export.data.address} at {export.fps} fps "
               f"({export.storage.value}); load it with LeRobotDataset('{export.repo_id}', root='{out}')")
