"""The `vla-data` command line. Exit codes: 0 success, 1 the data has errors, 2 usage errors."""

from __future__ import annotations

import errno
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource
from tqdm import tqdm

from pipelines.build_splits import run_build
from pipelines.figures import require_png
from pipelines.info import render_info, store_json
from pipelines.cli.options import (
    build_model,
    load_settings_file,
    model_flags,
    recorder_options,
    recorder_settings,
    replay_recorder_options,
    window_options,
)
from pipelines.store_plot import plot_store
from pipelines.validate import render_report, run_validate
from pipelines.cli.flags import EVAL_FLAGS, SERVE_FLAGS, TRAIN_FLAGS, VIEW_FLAGS, worded
from schemas import ValidateOptions
from schemas.evaluation import EvalOptions
from schemas.sample import Augment, MirrorRule, WindowSpec
from schemas.serve import ServeConfig
from schemas.store import BuildOptions, Interpolation, NormMode, ResizeMode, Split, Stratify
from schemas.synthetic import SourceFormat, SyntheticConfig
from schemas.train import Precision, TrainConfig
from schemas.view import ViewOptions
from vla_data import __version__
from vla_data.common.files import write_text_atomic
from vla_data.build.job import BuildRefused
from vla_data.store.location import StoreLocation
from vla_data.store.ownership import OwnershipError
from vla_data.sources.hdf5 import EPISODE_SUFFIXES
from vla_data.build.splits import SplitError
from vla_data.store.reader import StoreError, open_store
from vla_data.store.reader import verify as verify_store
from vla_data.synthetic.episodes import camera_settings, make_synthetic
from vla_data.store.writer_lock import StoreBusy


INTERRUPTED = 130  # the shell's code for a job ended by Ctrl-C
OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space, or write to another disk",
    errno.EROFS: "the file system is read-only: write to a folder on a writable disk",
    errno.EACCES: "no permission: write to a folder you own",
    errno.EPERM: "not permitted: write to a folder you own",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def fail(problem: str | Exception) -> NoReturn:
    """A data or setup error: said in red on stderr, exit 1 (usage errors stay click's, exit 2). A refusal's
    fixes are worded as the flags that give them."""
    click.echo(click.style(f"error: {worded(problem)}", fg="red"), err=True)
    sys.exit(1)


def os_error(exc: OSError) -> str:
    """An OS error as one line: the file, what the OS said, and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    hint = OS_HINTS.get(exc.errno or 0)
    return f"{where}{exc.strerror or exc}" + (f" ({hint})" if hint else "")


class Commands(click.Group):
    """Every command ends in a message, never a traceback: Ctrl-C exits 130 with one line, an OS error (a full
    disk, a read-only folder) exits 1 naming the file."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(INTERRUPTED)
        except OSError as exc:
            fail(os_error(exc))


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="vla-data")
def main() -> None:
    """vla-data: from recorded robot episodes (HDF5) to a fine-tuned vision-language-action policy.

    \b
    The path of the data:
      recorder episodes --validate--> report
      recorder episodes --build-splits--> dataset.zarr --train--> checkpoint --eval/predict
    """


def _image_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
    if not match:
        raise click.BadParameter(f"{value!r} is not HxW, e.g. 720x1280 or 96x160")
    return int(match[1]), int(match[2])


@main.command("make-synthetic")
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
    try:
        with tqdm(total=episodes, desc="make-synthetic", unit="episode", disable=None) as bar:
            paths = make_synthetic(out, config, progress=bar.update)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc}: write into a new folder, or remove the old bags first") from None
    what = "bags" if config.format == SourceFormat.rosbag2 else "episode files"
    click.echo(f"wrote {len(paths)} {what} to {out}" + (" (with one defect file per class)" if defects else ""))
    if cameras > 1:
        settings = camera_settings(cameras)
        flags = " ".join(f"--camera {c.name}={c.key}:{c.color_order.value}" for c in settings.cameras)
        if config.format == SourceFormat.rosbag2:
            flags += "".join(f" --camera-topic {c.name}={settings.camera_topics[c.name]}" for c in settings.cameras)
        click.echo(f"read them with {flags}")


def _episode_paths(ctx: click.Context, param: click.Parameter, value: tuple[Path, ...]) -> tuple[Path, ...]:
    """Files, folders and bags that exist, and BAG#k: the k-th episode of a bag cut into several."""
    from vla_data.sources.bags import split_part

    missing = [str(p) for p in value if not split_part(p)[0].exists()]
    if missing:
        raise click.BadParameter(f"{', '.join(missing)}: does not exist (an HDF5 episode, a folder, a bag, or BAG#k)")
    return value


def _report_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix.lower() in EPISODE_SUFFIXES:
        raise click.BadParameter(f"{value} looks like an episode file; the report is JSON (e.g. report.json)")
    return value


@main.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), callback=_episode_paths)
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
    """Check recorder episodes (files, or folders searched for *.h5 / *.hdf5) before anything uses them.

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


def _channels(ctx: click.Context, param: click.Parameter, value: str) -> str | list[int]:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give 'auto' or channel indices such as 0,1") from None


@main.command("build-splits")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, metavar="STORE",
              help="The store to write: a local folder (dataset.zarr) or a URL (s3://bucket/prefix/dataset.zarr; "
                   "credentials and endpoint from the environment, e.g. AWS_PROFILE, AWS_ENDPOINT_URL).")
@click.option("--image-size", default=224, show_default=True, type=click.IntRange(8, 2048), help="Stored frames are S x S.")
@click.option("--resize", type=click.Choice([m.value for m in ResizeMode]), default=ResizeMode.squash.value, show_default=True,
              help="squash keeps the whole view; letterbox keeps the aspect too; center-crop cuts the left and right edges.")
@click.option("--interpolation", type=click.Choice([m.value for m in Interpolation]), default=Interpolation.area.value, show_default=True)
@click.option("--val-ratio", default=0.1, show_default=True, type=float, help="Share of episodes for val (at least one).")
@click.option("--test-ratio", default=0.0, show_default=True, type=float, help="Share of episodes for test.")
@click.option("--seed", default=0, show_default=True, type=int, help="Split seed: same seed and content, same split.")
@click.option("--stratify", type=click.Choice([m.value for m in Stratify]), default=Stratify.scenario.value, show_default=True,
              help="Every scenario (or instruction) with 2+ episodes gets one in train and one in val.")
@click.option("--action-channels", default="auto", show_default=True, callback=_channels,
              help="'auto' keeps every channel not constant across the sources, or indices such as 0,1.")
@click.option("--action-names", default=None, help="Names of the kept channels, comma-separated [default: by position].")
@click.option("--norm", "norm_mode", type=click.Choice([m.value for m in NormMode]), default=NormMode.mean_std.value, show_default=True,
              help="Normalisation the stats are used with.")
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with columns episode,split (file name or path relative to the sources) for teams that "
                   "already chose; every source must be listed. Ratios and --stratify are then unused.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes that decode and resize frames; each writes whole shards.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Send the frame work to a running Dask cluster (e.g. tcp://head:8786) instead of local processes: "
                   "each of its workers writes whole shards straight to the store (use a URL or a shared folder for "
                   "-o, and sources at a path every worker sees). Needs `pip install vla-data[dask]`.")
@click.option("--skip-invalid", is_flag=True, help="Leave out episodes with errors (listed in the build log) instead of stopping.")
@click.option("--overwrite", is_flag=True,
              help="Replace a store built with other preprocessing, action channels or split options. Only ever a "
                   "vla-data store: any other folder at -o is refused, never deleted.")
@click.option("--replace-changed", is_flag=True,
              help="A stored source file whose content changed (re-exported) replaces its stored episode, in the "
                   "same split [default: refuse, naming the files].")
@click.option("--no-wait", is_flag=True, help="If another build is writing the same store, refuse instead of waiting.")
@recorder_options
def build_splits_cmd(sources: tuple[Path, ...], out: str, image_size: int, resize: str, interpolation: str,
                     val_ratio: float, test_ratio: float, seed: int, stratify: str, action_channels: str | list[int],
                     action_names: str | None, norm_mode: str, split_file: Path | None, workers: int,
                     scheduler: str | None, skip_invalid: bool, overwrite: bool, replace_changed: bool, no_wait: bool,
                     **settings_flags: object) -> None:
    """Build one zarr store from recorder episodes: frames resized once, actions, splits, train-only stats.

    Sources are validated first; any error stops the build and writes nothing (or, with --skip-invalid,
    those episodes are left out). Re-running with the same -o adds only episodes with new content and
    keeps every existing split; a stored file whose content changed is refused (--replace-changed replaces
    it); duplicates are listed. Each build writes a new version of the store and makes it current with one
    last write (current.json), on a local disk and on object storage alike.

    \b
    Safe by construction: -o must not be, hold or lie inside a source folder; only a vla-data store (or a
    new or empty folder) is ever written there or replaced; one build at a time writes a store (a second
    one waits, or refuses with --no-wait); Ctrl-C or a crash leaves the previous store as it was (what a
    killed build wrote is removed by the next build, or by `vla-data gc`).

    \b
    Examples:
      vla-data build-splits data/raw -o dataset.zarr
      vla-data build-splits data/raw data/new -o dataset.zarr --image-size 224 --resize letterbox --workers 4
      vla-data build-splits data/raw -o dataset.zarr --split-file our_splits.csv
      vla-data build-splits data/raw -o dataset.zarr --camera front=images --camera rear=observations/rear_images:rgb
      vla-data build-splits /mnt/shared/raw -o s3://fleet-data/datasets/v1.zarr --scheduler tcp://head:8786
    """
    settings = recorder_settings(**settings_flags)  # type: ignore[arg-type]
    options = build_model(
        BuildOptions,
        {
            "preprocessing": {"image_size": image_size, "resize": resize, "interpolation": interpolation},
            "splits": {"val_ratio": val_ratio, "test_ratio": test_ratio, "seed": seed, "stratify": stratify,
                       "split_file": str(split_file.resolve()) if split_file else None},
            "action_channels": action_channels,
            "action_names": action_names.split(",") if action_names else None,
            "norm_mode": norm_mode,
            "skip_invalid": skip_invalid,
            "overwrite": overwrite,
            "replace_changed": replace_changed,
            "wait": not no_wait,
            "workers": workers,
            "scheduler": scheduler,
        },
        "build-splits options",
    )
    try:
        text = run_build(list(sources), out, options, settings, on_wait=lambda message: click.echo(message, err=True))
    except BuildRefused as refused:
        click.echo(render_report(refused.report), err=True)
        fail(f"build refused, nothing written: {refused}; fix them or pass --skip-invalid")
    except (StoreError, SplitError, OwnershipError, StoreBusy) as exc:
        fail(exc)
    except OSError as exc:
        fail(f"{os_error(exc)}; nothing was published, any previous store at {out} is as it was")
    except KeyboardInterrupt:
        click.echo("interrupted, nothing published; any previous store at " f"{out} is as it was", err=True)
        sys.exit(INTERRUPTED)
    click.echo(text)


def _png_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    try:
        return None if value is None else require_png(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _rrd_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A Rerun recording to write: a .rrd file (its folder is checked when it is written: eval creates its -o)."""
    if value is not None and value.suffix != ".rrd":
        raise click.BadParameter(f"{value}: a Rerun recording is a .rrd file (e.g. {value.with_suffix('.rrd')})")
    return value


@main.command("info")
@click.argument("store", metavar="STORE")
@click.option("--verify", is_flag=True, help="Recompute every checksum; name any damaged array and episode range (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and the episode table as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), callback=_png_path,
              help="Also draw action histograms per channel and split, episode lengths and sample frames to this PNG.")
def info_cmd(store: str, verify: bool, as_json: bool, plot: Path | None) -> None:
    """Describe a store: episodes, frames, splits, per-scenario counts, stats, preprocessing, size.

    \b
    Examples:
      vla-data info dataset.zarr
      vla-data info dataset.zarr --verify
      vla-data info dataset.zarr --plot dataset.png
    """
    try:
        opened = open_store(store)
    except StoreError as exc:
        fail(exc)
    if as_json:
        click.echo(store_json(opened))
    else:
        click.echo(render_info(opened))
    if plot is not None:
        plot_store(opened, plot)
        click.echo(f"wrote {plot}", err=as_json)
    if verify:
        problems = verify_store(opened)
        for problem in problems:
            click.echo(click.style(f"damaged: {problem}", fg="red"))
        click.echo("verify: " + ("all checksums match" if not problems else f"{len(problems)} damaged object(s)"))
        sys.exit(1 if problems else 0)


@main.command("gc")
@click.argument("store", metavar="STORE")
@click.option("--no-wait", is_flag=True, help="If a build is writing the store, refuse instead of waiting for it.")
@click.option("--break-lease", is_flag=True,
              help="On object storage: release the writer lease a build left when it was killed on another machine "
                   "(only when you know it no longer runs; `vla-data info` names its holder).")
def gc_cmd(store: str, no_wait: bool, break_lease: bool) -> None:
    """Remove what killed builds left in a store: versions never made current, and versions a later build
    superseded. The current version is never touched; the store's writer lock is held, so no build is
    writing what is removed. `vla-data info` lists the leftovers; the next build removes them too.

    \b
    Examples:
      vla-data gc dataset.zarr
      vla-data gc s3://fleet-data/datasets/v1.zarr --break-lease
    """
    from vla_data.store.writer import collect_garbage

    try:
        gone = collect_garbage(StoreLocation.of(store), wait=not no_wait, break_lease=break_lease,
                               on_wait=lambda message: click.echo(message, err=True))
    except (StoreError, OwnershipError, StoreBusy) as exc:
        fail(exc)
    for leftover in gone:
        click.echo(f"removed {leftover.describe()}")
    click.echo(f"{store}: {len(gone)} leftover version(s) removed" if gone else f"{store}: nothing to remove")


def _side_words(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[tuple[str, ...]]:
    pairs = [tuple(w.strip() for w in v.split(",")) for v in value]
    if any(len(p) != 2 for p in pairs):
        raise click.BadParameter("give each pair as LEFT,RIGHT, e.g. 왼쪽,오른쪽")
    return pairs


def _negate_channels(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    try:
        return None if value is None else [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give recorder channel indices such as 1,2") from None


@main.command("inspect-sample")
@click.argument("store", metavar="STORE")
@click.option("--split", type=click.Choice([s.value for s in Split]), default=Split.train.value, show_default=True)
@click.option("--index", default=0, show_default=True, type=int, help="Sample index in the split (negative counts from the end).")
@window_options
@click.option("--augment", type=click.Choice([a.value for a in Augment]), default=Augment.none.value, show_default=True,
              help="mirror appends a mirrored copy of every sample whose instruction names a side: samples n.. are "
                   "mirrored copies, in order, of the samples of episodes with a side word (others are not mirrored).")
@click.option("--side-words", "side_words", multiple=True, callback=_side_words, metavar="LEFT,RIGHT",
              help="A (left, right) word pair besides English's, e.g. 왼쪽,오른쪽; repeat for more (the train "
                   "config's data.mirror.side_words).")
@click.option("--negate-channels", callback=_negate_channels, metavar="C,C",
              help="Recorder channels (indices, as --action-channels) mirror negates [default: 1,2, the teleop "
                   "recorder's linear_y and angular_z; other recorders must give them] (the train config's "
                   "data.mirror.negate_channels).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), callback=_png_path,
              help="Draw the window frames and their action chunks to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the sample's shapes, masks and physical actions as JSON.")
@click.option("--rrd", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.rrd",
              callback=_rrd_path,
              help="Write the sample as a Rerun recording: the window's frames on a `window` timeline, pad frames "
              "greyed and marked, each chunk's actions as curves, padded ones as red points.")
def inspect_sample_cmd(store: str, split: str, index: int, spec: WindowSpec, augment: str,
                       side_words: list[tuple[str, ...]], negate_channels: list[int] | None, out: Path | None,
                       as_json: bool, rrd: Path | None) -> None:
    """Show one training sample exactly as WindowDataset gives it to the model.

    The W frames t-W+1..t (frames repeated before the episode start greyed and marked pad) and, under
    each, its K x A action chunk in physical units (masked entries hollow). Check here that the window,
    chunk and offset are what you meant before training.

    \b
    Examples:
      vla-data inspect-sample dataset.zarr --index 0 --out sample.png
      vla-data inspect-sample dataset.zarr --split val --index -1 --window 4 --chunk 8 --json
      vla-data inspect-sample dataset.zarr --index 0 --window 8 --rrd sample.rrd   # in Rerun
    """
    from pipelines.inspect_sample import plot_sample, summarize_sample  # torch is loaded only here
    from vla_data.samples.dataset import WindowDataset

    mirror = build_model(MirrorRule, {"side_words": side_words, "negate_channels": negate_channels},
                         "--side-words/--negate-channels")
    try:
        ds = WindowDataset(store, split, spec=spec, augment=augment, mirror=mirror)
    except (StoreError, ValueError) as exc:
        fail(exc)
    if not -len(ds) <= index < len(ds):
        fail(f"--index {index}: the {split} split has {len(ds)} samples (0..{len(ds) - 1})")
    index %= len(ds)
    try:
        summary = summarize_sample(ds, index)
    except StoreError as exc:  # a damaged shard: named, with the command that finds every damaged object
        fail(exc)
    if as_json:
        click.echo(summary.model_dump_json(indent=2))
    else:
        masked = sum(not m for row in summary.chunk_mask for m in row)
        click.echo(f"{split} sample {index} of {len(ds)}: episode {summary.episode}, t={summary.t}, "
                   f"{sum(summary.frame_mask)}/{spec.window} real frames, "
                   f"{masked} of {spec.window * spec.chunk} actions padded")
        click.echo(f"instruction: {summary.instruction}")
        click.echo("shapes: " + ", ".join(f"{k.value} {tuple(v)}" for k, v in summary.shapes.items()))
    if out is not None:
        plot_sample(ds, index, out)
        click.echo(f"wrote {out}", err=as_json)
    if rrd is not None:
        from pipelines.rerun_recording import log_sample
        from pipelines.view import Sink, record
        from schemas.view import ImageEncoding

        frames = {c: f.numpy().transpose(0, 2, 3, 1) for c, f in ds[index]["rgb"].items()}
        try:
            record(Sink(save=rrd), f"sample-{split}-{index}",
                   lambda rec: log_sample(rec, summary, frames, ViewOptions(images=ImageEncoding.raw)))
        except ValueError as exc:
            fail(exc)
        except OSError as exc:
            fail(os_error(exc))
        click.echo(f"wrote {rrd}", err=as_json)


def assemble_config(config_file: Path | None, given: dict[str, Any]) -> TrainConfig:
    """``--config`` file values, overridden by the flags actually given (each sets the TrainConfig field
    ``TRAIN_FLAGS`` maps it onto), validated as one TrainConfig; unset fields take the model's defaults."""
    values = load_settings_file(config_file)
    for flag, value in given.items():
        node = values
        *parents, leaf = TRAIN_FLAGS[flag]
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{'.'.join(parents)} in {config_file} must be a mapping")
        node[leaf] = str(value) if isinstance(value, Path) else value
    return build_model(TrainConfig, values, "train config")


@main.command("train")
@click.argument("store", required=False, metavar="[STORE]")
@click.option("-o", "--out", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The run folder: config, logs, TensorBoard, checkpoint-STEP/.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML or JSON TrainConfig (data/model/optim/log sections); flags override it.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue this run exactly from its latest checkpoint (its saved config; only --max-steps may change).")
@model_flags(TrainConfig, {flag: path for flag, path in TRAIN_FLAGS.items() if flag != "store"})
def train_cmd(store: str | None, run_dir: Path | None, config_file: Path | None, resume_dir: Path | None,
              **flags: object) -> None:
    """Fine-tune the Kosmos-2 + LoRA policy on a store's train split, validating on its val split.

    Every setting is a field of one config (saved as RUN/train_config.json): flags, a --config file, or
    both. Before the first step a preflight on a real batch refuses a run that cannot learn (no
    trainable parameters, no gradient, all-padding targets, shape or action-dimension mismatches).
    The same command runs on several GPUs or nodes under `accelerate launch` or `torchrun`.
    --model tiny-random builds a small random Kosmos-2 in code (tests, demo); a hub id must already be
    in the local Hugging Face cache, or pass a local directory: nothing is downloaded.

    \b
    Examples:
      vla-data train dataset.zarr -o runs/tiny --model tiny-random --max-steps 200
      vla-data train dataset.zarr -o runs/k2 --model microsoft/kosmos-2-patch14-224 --precision bf16 \\
          --window 4 --batch-size 1 --accumulation 8 --gradient-checkpointing
      torchrun --nproc_per_node 4 -m pipelines.cli train dataset.zarr -o runs/k2 --config train.yaml
      vla-data train --resume runs/k2 --max-steps 4000
    """
    from vla_model.backbone import ModelNotFound
    from vla_model.checkpoint import CheckpointError
    from vla_model.policy import ConfigError
    from vla_model.preflight import PreflightError
    from vla_model.trainer import CONFIG_FILE, train

    ctx = click.get_current_context()
    given = {k: v for k, v in flags.items() if v is not None and ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    if resume_dir is not None:
        extra = sorted(set(given) - {"max_steps"}) + (["STORE"] if store else []) + (["--config"] if config_file else [])
        if extra or (run_dir is not None and run_dir != resume_dir):
            raise click.UsageError(f"a resumed run keeps its config; only --max-steps may change (got {extra or '--out'})")
        if not (resume_dir / CONFIG_FILE).is_file():
            raise click.UsageError(f"{resume_dir} holds no {CONFIG_FILE}; is it a run folder?")
        config = assemble_config(resume_dir / CONFIG_FILE, given)
        run_dir = resume_dir
    else:
        if run_dir is None:
            raise click.UsageError("give the run folder with -o/--out (or --resume RUN)")
        if (run_dir / CONFIG_FILE).exists():
            raise click.UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another -o")
        if store is not None:
            given["store"] = store
        config = assemble_config(config_file, given)
    try:
        summary = train(config, run_dir, resume=resume_dir is not None)
    except (StoreError, ValueError, ModelNotFound, ConfigError, PreflightError, CheckpointError) as exc:
        fail(exc)
    if summary.processes == 1 or int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"trained {summary.steps} steps on {summary.device} x{summary.processes}; best val loss "
                   f"{summary.best_val_loss} at step {summary.best_step}; checkpoint {summary.last_checkpoint}")


DEVICE_HELP = "cpu, cuda, cuda:1, ... [default: cuda when available, else cpu]"
backbone_option = click.option(
    "--model", "model", default=None, metavar="SOURCE",
    help="Where the backbone is now (a directory, a cached hub id, tiny-random), when not where the checkpoint "
         "records it (another machine, a moved folder); it must have the trained backbone's shapes.")


@main.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("store", metavar="STORE")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.json, per_episode.csv and the PNGs (created; files in it are replaced).")
@model_flags(EvalOptions, EVAL_FLAGS)
@click.option("--rrd", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.rrd",
              callback=_rrd_path,
              help="Also write the worst episodes (first-action MAE) with the predictions as a Rerun recording "
              "(as `vla-data view --run` shows them).")
@click.option("--rrd-episodes", type=click.IntRange(1), default=5, show_default=True,
              help="--rrd: how many of the worst episodes.")
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
def eval_cmd(checkpoint: Path, store: str, out: Path, rrd: Path | None, rrd_episodes: int, device: str | None,
             model: str | None, **flags: object) -> None:
    """Score a trained policy on every anchor of a store split, beside two baselines.

    CHECKPOINT is a checkpoint folder or a run folder (its latest checkpoint). All figures are in physical
    units and count only real actions (never the padding past an episode's end): per-channel MAE, MSE,
    RMSE and direction accuracy (sign agreement, values inside --dead-band count as 0), and success@tol
    (every channel within --tolerance). Each is given for the first action of each chunk (what the robot
    executes next) and for the whole chunk, beside the same figure for predicting the train split's mean
    action and for standing still; then per scenario. The checkpoint must fit the store: same
    preprocessing and action channels (refused otherwise, saying which differ).

    \b
    Writes OUT/metrics.json (schemas.evaluation.EvalReport), OUT/per_episode.csv,
    OUT/trajectories.png, OUT/errors.png, OUT/scenarios.png, and prints the table.

    \b
    Example:
      vla-data eval runs/tiny dataset.zarr --split val -o runs/tiny/eval
      vla-data eval runs/k2 dataset.zarr -o eval --model /data/models/kosmos-2   # the backbone moved
      vla-data eval runs/tiny dataset.zarr -o eval --rrd eval/worst.rrd   # the 5 worst episodes, in Rerun
    """
    from pipelines.evaluate import evaluate_checkpoint, render_report, write_outputs
    from vla_model.backbone import ModelNotFound
    from vla_model.checkpoint import CheckpointError

    options = build_model(EvalOptions, {k: v for k, v in flags.items() if v is not None}, "eval options")
    try:
        report, results = evaluate_checkpoint(checkpoint, store, options, device, model=model)
        written = write_outputs(report, results, out)
        if rrd is not None:
            from pipelines.view import record_worst
            from vla_model.runtime import Policy
            from vla_data.store.reader import open_store

            record_worst(results, open_store(store), Policy.from_checkpoint(checkpoint, device, model), rrd,
                         rrd_episodes)
            written.append(rrd)
    except (StoreError, CheckpointError, ModelNotFound, ValueError) as exc:
        fail(exc)
    except OSError as exc:
        fail(os_error(exc))
    click.echo(render_report(report))
    click.echo(f"\nwrote {', '.join(str(p) for p in written)}")


def _episode_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """An episode file or bag that exists, or BAG#k: the k-th episode of a bag cut into several."""
    from vla_data.sources.bags import split_part

    if not split_part(value)[0].exists():
        raise click.BadParameter(f"{value} does not exist (an HDF5 episode, a bag, or BAG#k of a cut bag)")
    return value


@main.command("predict")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("episode", type=click.Path(path_type=Path), callback=_episode_path)
@click.option("--json", "as_json", is_flag=True, help="Print every frame's whole chunk and recorded action as JSON.")
@click.option("--instruction", default=None, help="Use this instruction instead of the one found for the episode.")
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default=None,
              help="The backbone's precision: fp32, bf16, or fp16 on CUDA [default: fp32].")
@click.option("--compile", is_flag=True, default=None, help="Compile the backbone with CUDA graphs (CUDA only; else eager).")
@replay_recorder_options
def predict_cmd(checkpoint: Path, episode: Path, as_json: bool, instruction: str | None, device: str | None,
                model: str | None, precision: str | None, compile: bool | None, **recorder: object) -> None:
    """Replay one recorded episode (an HDF5 file, a ROS 2 bag, or BAG#k of a cut bag) through the policy, one
    frame at a time, as a robot loop would.

    A PolicyRunner (vla_model.PolicyRunner) is reset with the episode's instruction and stepped with each
    raw frame; per frame it prints the predicted first action beside the action recorded after that
    frame (row t + action offset), then the first-action MAE. Episodes shorter than the window work: the
    first frame stands in for the frames before it, as in training. Frames are read in --color-order (or
    the --recorder-config's) when given, else in the checkpoint's source colour order, then made RGB.

    \b
    Examples:
      vla-data predict runs/tiny episodes/1box_hori_left_core_medium_0001.h5
      vla-data predict runs/tiny/checkpoint-300 ep.h5 --json > ep_predictions.json
      vla-data predict runs/tiny bags/episode_20251106_123136_1box_hori_left_core_medium
      vla-data predict runs/tiny bags/shift_0930#3 --cut gap   # the 3rd episode of a bag cut at pauses
    """
    from pipelines.predict import predict_episode, render_predictions
    from vla_model.backbone import ModelNotFound
    from vla_model.checkpoint import CheckpointError
    from vla_model.runtime import Policy

    settings = recorder_settings(**recorder)  # type: ignore[arg-type]
    try:
        policy = Policy.from_checkpoint(checkpoint, device, model, precision or "fp32", bool(compile),
                                        lambda line: click.echo(line, err=True))
        report = predict_episode(policy, episode, settings, instruction, progress=not as_json)
    except (CheckpointError, ModelNotFound, ValueError) as exc:
        fail(exc)
    for warning in report.warnings:
        click.echo(click.style(f"warning: {warning}", fg="yellow"), err=True)
    click.echo(report.model_dump_json(indent=2) if as_json else render_predictions(report))


@main.command("view")
@click.argument("source", metavar="SOURCE")
@click.option("--episode", "episodes", multiple=True, metavar="ID|NAME",
              help=ViewOptions.model_fields["episodes"].description + " Repeatable.")
@model_flags(ViewOptions, VIEW_FLAGS)
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.rrd",
              callback=_rrd_path, help="Write the recording to FILE.rrd (complete or not at all); `rerun FILE.rrd` opens it.")
@click.option("--serve", is_flag=True, help="Serve the recording on 127.0.0.1 with Rerun's web viewer (its page listens on every interface, "
              "the data only on 127.0.0.1) and print the URL; Ctrl-C stops it.")
@click.option("--web-port", type=click.IntRange(1, 65535), default=9090, show_default=True,
              help="--serve: the web viewer's port.")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=9876, show_default=True,
              help="--serve: the port on 127.0.0.1 that serves the recording to the viewer.")
@click.option("--run", "run", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="RUN_OR_CHECKPOINT", help="Add what this policy predicts at every frame beside the recording.")
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
@recorder_options
def view_cmd(source: str, episodes: tuple[str, ...], save: Path | None, serve: bool, web_port: int, grpc_port: int,
             run: Path | None, device: str | None, model: str | None, **flags: object) -> None:
    """Look at episodes in Rerun: every camera, every action channel as a curve, frame by frame.

    SOURCE is a store (a folder or a URL), a folder of recorder episodes, one HDF5 episode, or a ROS 2 bag.
    On a `frame` timeline (and a `time` one where a bag stamps its frames) each episode shows each camera as
    the model sees it (after preprocessing, RGB) and, for raw sources, as recorded (its colour order
    applied: a red bottle is red); each action channel in physical units, named; the instruction and its
    source; scenario, split, frame count and (raw sources) validate's findings. With --run, each frame adds
    the predicted first action, its error against the recorded row t+offset, and the whole predicted chunk as
    a short curve into the future.

    Without --save or --serve a native viewer is started where there is a display.

    \b
    Examples:
      vla-data view dataset.zarr --split val --max-episodes 4 --save val.rrd
      vla-data view dataset.zarr --episode 3 --run runs/tiny --serve
      vla-data view data/raw/episode_20251106_123136_1box_hori_left_core_medium.h5
      vla-data view s3://fleet-data/datasets/v1.zarr --episode 12 --images raw --save e12.rrd
    """
    from pipelines.view import Sink, ViewError, episodes_into, raw_views, record, resolve_source, store_views
    from vla_model.backbone import ModelNotFound
    from vla_model.checkpoint import CheckpointError
    from vla_model.runtime import Policy

    if save is not None and serve:
        raise click.UsageError("--save and --serve: choose one (open the saved file with `rerun FILE.rrd`)")
    view_flags = {k: flags.pop(k) for k in list(flags) if k in VIEW_FLAGS}
    options = build_model(ViewOptions, {k: v for k, v in view_flags.items() if v is not None}
                          | ({"episodes": list(episodes)} if episodes else {}), "view options")
    settings = recorder_settings(**flags)  # type: ignore[arg-type]
    sink = Sink(save=save, serve=serve, web_port=web_port, grpc_port=grpc_port)
    try:
        policy = None if run is None else Policy.from_checkpoint(run, device, model)
        found = resolve_source(source)
        if found.store is not None:
            views = store_views(found.store, options, policy)
        else:
            if options.split is not None:
                raise ViewError(f"--split {options.split.value}: {source} holds recorder episodes, not a store")
            views = raw_views(found.episodes, settings, options, policy,
                              lambda line: click.echo(click.style(f"warning: {line}", fg="yellow"), err=True))
        with tqdm(desc="view", unit="episode", disable=None) as bar:
            n_episodes, n_frames = record(sink, Path(source.rstrip("/")).name, episodes_into(views, options, bar.update))
    except (StoreError, CheckpointError, ModelNotFound, ValueError) as exc:
        fail(exc)
    except OSError as exc:
        fail(os_error(exc))
    logged = f"{n_episodes} episode(s), {n_frames} frames"
    if save is not None:
        click.echo(f"wrote {save} ({logged}); open it with `rerun {save}`")
    elif serve:
        click.echo(f"serving {logged}: open {sink.viewer_url()}  (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")
    else:
        click.echo(f"sent {logged} to the Rerun viewer")


@main.command("serve")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", default=None, help=DEVICE_HELP)
@backbone_option
@model_flags(ServeConfig, SERVE_FLAGS)
def serve_cmd(checkpoint: Path, device: str | None, model: str | None, **flags: object) -> None:
    """Serve a trained policy (a checkpoint, or a run: its latest) to robots over a websocket.

    The robot side is the torch-free client in client/ (pip install ./client): PolicyClient(url) sends
    hello, reset(instruction) and step(frames) and gets (K, A) chunks in physical units; msgpack with
    numpy arrays, raw uint8 frames or JPEG/PNG bytes. One PolicyRunner per connection: each step runs the
    backbone on the new frame only. Listens on 127.0.0.1 unless --host says otherwise; another host needs
    --token-file (the secret every robot sends) or --insecure. Ctrl-C stops it (exit 0).

    \b
    Examples:
      vla-data serve runs/k2 --device cuda --precision bf16
      vla-data serve runs/k2 --host 0.0.0.0 --port 8765 --token-file /etc/vla/token
    """
    import logging

    from pipelines.serve import load_token, run_server
    from vla_model.backbone import ModelNotFound
    from vla_model.checkpoint import CheckpointError
    from vla_model.runtime import Policy

    config = build_model(ServeConfig, {k: v for k, v in flags.items() if v is not None} | {"device": device},
                         "serve options")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        token = load_token(config.token_file)
        policy = Policy.from_checkpoint(checkpoint, config.device, model, config.precision, config.compile,
                                        lambda line: click.echo(line, err=True))
        run_server(policy, config, token, lambda line: click.echo(line, err=True))
    except (CheckpointError, ModelNotFound, ValueError) as exc:
        fail(exc)
    except OSError as exc:
        fail(f"{os_error(exc)} (is the port in use? pick another with --port)")


@main.command("drive")
@click.argument("episode", type=click.Path(path_type=Path), callback=_episode_path)
@click.option("--url", default=None, help="The policy server to drive, e.g. ws://gpu-box:8765.")
@click.option("--serve", "checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Instead of --url: serve this checkpoint (or run) on 127.0.0.1 for the drive, over a real websocket.")
@click.option("--execution", default="ensemble", show_default=True,
              help="How chunks become commands: first, chunk:N, ensemble or async[:N].")
@click.option("--instruction", default=None, help="Use this instruction instead of the one found for the episode.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The shared secret, for a server started with --token-file.")
@click.option("--deadline", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Seconds a chunk's frame may be old before the command is zero velocity (the safety stop).")
@click.option("--snap", is_flag=True, help="Snap each command to the teleop levels (e.g. -1.15, 0, +1.15).")
@click.option("--rate", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Control ticks per second (0: as fast as the server answers).")
@click.option("--json", "as_json", is_flag=True, help="Print the report (every command, the latencies) as JSON.")
@replay_recorder_options
def drive_cmd(episode: Path, url: str | None, checkpoint: Path | None, execution: str, instruction: str | None,
              token_file: Path | None, deadline: float, snap: bool, rate: float, as_json: bool,
              **recorder: object) -> None:
    """Drive one recorded episode (an HDF5 file, a ROS 2 bag, or BAG#k) through a policy server as the robot
    would: its client, its executor.

    Each frame is sent to the server (vla-data serve) with the robot-side client, the chunks become one
    command per tick by --execution, and the commands are compared with the recorded actions; the round
    trip and the server's time are reported. Checks a deployment end to end before the robot moves.

    \b
    Examples:
      vla-data drive ep.h5 --url ws://gpu-box:8765 --execution ensemble
      vla-data drive ep.h5 --serve runs/tiny --execution chunk:4 --json
    """
    from contextlib import nullcontext

    from pipelines.drive import drive_episode, render_drive
    from pipelines.serve import load_token, serving
    from vla_client.client import ServerError, Unauthorized
    from vla_model.backbone import ModelNotFound
    from vla_model.checkpoint import CheckpointError
    from vla_model.runtime import Policy

    if (url is None) == (checkpoint is None):
        raise click.UsageError("give the server with --url ws://HOST:PORT, or --serve CHECKPOINT to serve one here")
    settings = recorder_settings(**recorder)  # type: ignore[arg-type]
    try:
        token = load_token(str(token_file) if token_file else None)
        local = (serving(Policy.from_checkpoint(checkpoint), ServeConfig(port=0), token)
                 if checkpoint is not None else nullcontext())
        with local as server:
            report = drive_episode(url or server.url, episode, settings, execution, instruction, token, deadline,
                                   snap, rate)
    except (CheckpointError, ModelNotFound, ValueError, ServerError, Unauthorized, ConnectionError) as exc:
        fail(exc)
    click.echo(report.model_dump_json(indent=2) if as_json else render_drive(report))

