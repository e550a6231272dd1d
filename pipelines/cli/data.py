"""`vla-data make-synthetic` and `vla-data validate`: recorder episodes written, and checked before anything
uses them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from tqdm import tqdm

from pipelines.cli.errors import reported
from pipelines.cli.options import build_model, recorder_options, recorder_settings, source_paths, window_options
from pipelines.validate import render_report, run_validate
from schemas import ValidateOptions
from schemas.sample import WindowSpec
from schemas.synthetic import SourceFormat, SyntheticConfig
from vla_data.common.files import write_text_atomic
from vla_data.sources.hdf5 import EPISODE_SUFFIXES
from vla_data.synthetic.episodes import camera_settings, make_synthetic


def _image_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
    if not match:
        raise click.BadParameter(f"{value!r} is not HxW, e.g. 720x1280 or 96x160")
    return int(match[1]), int(match[2])


@click.command("make-synthetic")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--episodes", default=40, show_default=True, type=click.IntRange(min=0), help="Clean episodes to write.")
@click.option(
    "--image-size",
    default="720x1280",
    show_default=True,
    callback=_image_size,
    help="Frame size HxW; the real camera gives 720x1280, use e.g. 96x160 for quick experiments.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same episodes.")
@click.option(
    "--defects", is_flag=True, help="Also write one defective file per validation finding class (for tests, demos)."
)
@click.option("--cameras", default=1, show_default=True, type=click.IntRange(1, 2),
              help=SyntheticConfig.model_fields["cameras"].description)
@click.option("--format", "source_format", default=SourceFormat.hdf5.value, show_default=True,
              type=click.Choice([f.value for f in SourceFormat]), help=SyntheticConfig.model_fields["format"].description)
def make_synthetic_cmd(out: Path, episodes: int, image_size: tuple[int, int], seed: int, defects: bool,
                       cameras: int, source_format: str) -> None:
    """Write synthetic episodes in the recorder's exact HDF5 format (or as ROS 2 bags) into OUT.

    A red bottle stands left or right of the robot behind grey boxes; the scripted teleop operator strafes
    toward it and drives up to it, so the action is visible in the frames and matches the instruction.
    Frames are BGR, actions keyboard values (-1.15/0/+1.15), some files lack the instruction (it is then in
    dataset_index.csv or only in the file name), lengths vary. Files are written whole or not at all.

    \b
    Example:
      vla-data make-synthetic data/raw --episodes 40 --image-size 96x160 --seed 0
      vla-data make-synthetic data/raw2 --episodes 40 --image-size 96x160 --cameras 2
      vla-data make-synthetic data/bags --episodes 40 --image-size 96x160 --format rosbag2
    """
    config = build_model(
        SyntheticConfig,
        {"episodes": episodes, "height": image_size[0], "width": image_size[1], "seed": seed, "defects": defects,
         "cameras": cameras, "format": source_format},
        "make-synthetic options",
    )
    with (reported(exists="write into a new folder, or remove the old bags first"),
          tqdm(total=episodes, desc="make-synthetic", unit="episode", disable=None) as bar):
        paths = make_synthetic(out, config, progress=bar.update)
    what = "bags" if config.format == SourceFormat.rosbag2 else "episode files"
    click.echo(f"wrote {len(paths)} {what} to {out}" + (" (with one defect file per class)" if defects else ""))
    if cameras > 1:
        settings = camera_settings(cameras)
        flags = " ".join(f"--camera {c.name}={c.key}:{c.color_order.value}" for c in settings.cameras)
        if config.format == SourceFormat.rosbag2:
            flags += "".join(f" --camera-topic {c.name}={settings.camera_topics[c.name]}" for c in settings.cameras)
        click.echo(f"read them with {flags}")


def _report_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix.lower() in EPISODE_SUFFIXES:
        raise click.BadParameter(f"{value} looks like an episode file; the report is JSON (e.g. report.json)")
    return value


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, callback=source_paths)
@click.option("--deep", is_flag=True, help="Also decode every frame: frozen camera, damaged chunks, exact duplicates.")
@window_options
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Files checked in parallel processes.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), callback=_report_path,
              help="Also write the report as JSON to this file ('-' for stdout, which then carries only the JSON).")
@recorder_options
def validate_cmd(
    paths: tuple[Path, ...],
    deep: bool,
    spec: WindowSpec,
    workers: int,
    json_out: Path | None,
    **settings_flags: object,
) -> None:
    """Check recorder episodes (HDF5 files, ROS 2 bags, LeRobot v3.0 dataset folders, or folders searched for
    them; BAG#k / DIR#k: one episode; hf://datasets/ORG/NAME: a LeRobot dataset already in the local caches)
    before anything uses them.

    Each file gets findings with a stable code, a severity and a hint saying how to fix it; then checks
    across files (duplicates, constant action channels, differing frame sizes) and a dataset summary.
    The default pass reads headers, attributes and actions only; --deep also decodes every frame.
    Input files are opened read-only and never locked, written or moved.

    Exit status: 0 no errors (warnings allowed), 1 some file has an error, 2 usage error.

    \b
    Examples:
      vla-data validate data/raw
      vla-data validate data/raw --deep --workers 4 --json report.json
      vla-data validate new_recorder/ --frames-key observations/images --color-order rgb
      vla-data validate data/raw --camera front=images --camera rear=observations/rear_images:rgb
    """
    settings = recorder_settings(**settings_flags)  # type: ignore[arg-type]
    options = ValidateOptions(deep=deep, window=spec, workers=workers)
    report = run_validate(list(paths), settings, options)
    text = report.model_dump_json(indent=2)
    if json_out is not None and str(json_out) == "-":
        click.echo(text)
    else:
        if json_out is not None:
            write_text_atomic(json_out, text + "\n")
        click.echo(render_report(report))
    sys.exit(report.exit_code)
