"""`vla-data build-splits`, `info`, `gc` and `inspect-sample`: a store built from recorder episodes, described,
cleaned of what killed builds left, and one of its training samples shown as the model gets it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.build_splits import run_build
from pipelines.cli.errors import fail, reported
from pipelines.cli.flags import worded
from pipelines.cli.options import (
    build_model,
    png_path,
    recorder_options,
    recorder_settings,
    rrd_path,
    source_paths,
    window_options,
)
from pipelines.info import render_info, store_json
from pipelines.store_plot import plot_store
from schemas.sample import Augment, MirrorRule, WindowSpec
from schemas.store import BuildOptions, Interpolation, NormMode, ResizeMode, Split, Stratify
from vla_data.store.location import StoreLocation
from vla_data.store.reader import open_store
from vla_data.store.reader import verify as verify_store


def _channels(ctx: click.Context, param: click.Parameter, value: str) -> str | list[int]:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give 'auto' or channel indices such as 0,1") from None


@click.command("build-splits")
@click.argument("sources", nargs=-1, required=True, callback=source_paths)
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
@click.option("--update-instructions", is_flag=True,
              help="A stored episode whose source now gives another instruction (the file, dataset_index.csv, the "
                   "name) takes it in the new version [default: list it, keep the stored one].")
@click.option("--prune", is_flag=True,
              help="With --overwrite: build without the stored episodes the sources no longer hold [default: refuse, "
                   "naming how many]; the version they are in stays readable as STORE@VERSION.")
@click.option("--no-wait", is_flag=True, help="If another build is writing the same store, refuse instead of waiting.")
@recorder_options
def build_splits_cmd(sources: tuple[Path, ...], out: str, image_size: int, resize: str, interpolation: str,
                     val_ratio: float, test_ratio: float, seed: int, stratify: str, action_channels: str | list[int],
                     action_names: str | None, norm_mode: str, split_file: Path | None, workers: int,
                     scheduler: str | None, skip_invalid: bool, overwrite: bool, replace_changed: bool, update_instructions: bool,
                     prune: bool, no_wait: bool,
                     **settings_flags: object) -> None:
    """Build one zarr store from recorder episodes: frames resized once, actions, splits, train-only stats.

    SOURCES are HDF5 files, ROS 2 bags, LeRobot v3.0 dataset folders (hf://datasets/ORG/NAME: one already in
    this machine's caches; nothing is downloaded), folders searched for them, or BAG#k / DIR#k (one episode).
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
      vla-data build-splits lerobot-ds -o ds.zarr --frames-key observation.images.rgb --actions-key action --action-dim 2
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
            "prune": prune,
            "update_instructions": update_instructions,
            "wait": not no_wait,
            "workers": workers,
            "scheduler": scheduler,
        },
        "build-splits options",
    )
    with reported(after_os_error=f"; nothing was published, any previous store at {out} is as it was",
                  interrupted=f"interrupted, nothing published; any previous store at {out} is as it was"):
        text = run_build(list(sources), out, options, settings, on_wait=lambda notice: click.echo(worded(notice), err=True))
    click.echo(text)


@click.command("info")
@click.argument("store", metavar="STORE")
@click.option("--verify", is_flag=True, help="Recompute every checksum; name any damaged array and episode range (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and the episode table as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), callback=png_path,
              help="Also draw action histograms per channel and split, episode lengths and sample frames to this PNG.")
def info_cmd(store: str, verify: bool, as_json: bool, plot: Path | None) -> None:
    """Describe a store: episodes, frames, splits, per-scenario counts, stats, preprocessing, size.

    \b
    Examples:
      vla-data info dataset.zarr
      vla-data info dataset.zarr --verify
      vla-data info dataset.zarr --plot dataset.png
    """
    opened = open_store(store)
    opened.check_arrays()
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


@click.command("gc")
@click.argument("store", metavar="STORE")
@click.option("--no-wait", is_flag=True, help="If a build is writing the store, refuse instead of waiting for it.")
@click.option("--break-lease", is_flag=True,
              help="On object storage: release the writer lease a build left when it was killed on another machine "
                   "(only when you know it no longer runs; `vla-data info` names its holder).")
@click.option("--keep-last", type=click.IntRange(min=0), default=None, metavar="N",
              help="Also drop the data of committed versions, keeping the current one, every tagged one and the "
                   "newest N others (their records stay in `vla-data log`).")
@click.option("--keep-days", type=click.FloatRange(min=0), default=None, metavar="D",
              help="With --keep-last: also keep every version younger than D days.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def gc_cmd(store: str, no_wait: bool, break_lease: bool, keep_last: int | None, keep_days: float | None,
           dry_run: bool) -> None:
    """Remove what killed builds left in a store (versions never committed) and, with --keep-last, the data of
    old committed versions the retention rule does not keep. Without --keep-last every committed version stays
    readable (STORE@VERSION); the current and every tagged version are never removed. The store's writer lock
    is held, so no build is writing what is removed.

    \b
    Examples:
      vla-data gc dataset.zarr
      vla-data gc dataset.zarr --keep-last 5 --dry-run
      vla-data gc s3://fleet-data/datasets/v1.zarr --break-lease
    """
    from schemas.history import Retention
    from vla_data.store.writer import collect_garbage

    if keep_days is not None and keep_last is None:
        raise click.UsageError("--keep-days needs --keep-last (the rule keeps the newest N and those younger than D)")
    retention = Retention(keep_last=keep_last, keep_days=keep_days) if keep_last is not None else None
    gone = collect_garbage(StoreLocation.of(store), wait=not no_wait, break_lease=break_lease,
                           on_wait=lambda notice: click.echo(worded(notice), err=True), retention=retention,
                           dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for leftover in gone:
        click.echo(f"{verb} {leftover.describe()}")
    versions, segments = sum(not g.segment for g in gone), sum(g.segment for g in gone)
    counted = ", ".join(f"{n} {what}(s)" for n, what in ((versions, "version"), (segments, "segment")) if n)
    click.echo(f"{store}: {counted} {verb}" if gone else f"{store}: nothing to remove")


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


@click.command("inspect-sample")
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
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), callback=png_path,
              help="Draw the window frames and their action chunks to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the sample's shapes, masks and physical actions as JSON.")
@click.option("--rrd", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE.rrd",
              callback=rrd_path,
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
    from pipelines.inspect_sample import (  # torch is loaded only here
        plot_sample,
        record_sample,
        render_sample,
        summarize_sample,
    )
    from vla_data.samples.dataset import WindowDataset

    mirror = build_model(MirrorRule, {"side_words": side_words, "negate_channels": negate_channels},
                         "--side-words/--negate-channels")
    ds = WindowDataset(store, split, spec=spec, augment=augment, mirror=mirror)
    if not -len(ds) <= index < len(ds):
        fail(f"--index {index}: the {split} split has {len(ds)} samples (0..{len(ds) - 1})")
    index %= len(ds)
    summary = summarize_sample(ds, index)  # a damaged shard is a StoreError naming it
    click.echo(summary.model_dump_json(indent=2) if as_json else render_sample(summary, len(ds), spec))
    if out is not None:
        plot_sample(ds, index, out)
        click.echo(f"wrote {out}", err=as_json)
    if rrd is not None:
        record_sample(ds, index, summary, rrd)
        click.echo(f"wrote {rrd}", err=as_json)
