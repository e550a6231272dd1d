"""Edits of a store without a rebuild (`remove`, `relabel`, `resplit`, `restore`: each a new version that copies
no frame), `diff` between two versions, and `merge` of stores into a new one."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.errors import fail
from pipelines.cli.flags import worded
from pipelines.cli.history import store_location as _store
from schemas.edits import EpisodeSelection, Relabel, Resplit
from schemas.store import EpisodeRecord, Split, StoreManifest
from vla_data.store.reader import DatasetStore, open_store

WHERE = click.option("--where", default=None, metavar="QUERY",
                     help="Also the episodes this query on the episode table matches (pandas syntax), e.g. "
                          "\"scenario == '1box_hori_left'\" or \"n_frames < 20\".")
NO_WAIT = click.option("--no-wait", is_flag=True, help="If a build or another edit is writing the store, refuse "
                                                       "instead of waiting for it.")
EPISODES = click.argument("episodes", nargs=-1, metavar="[EPISODE]...")
EPISODE_HELP = ("EPISODE: an id (`vla-data info` and `inspect-sample` show them), a source's file name or path, or a "
                "content hash (8 characters or more).")


def _selection(episodes: tuple[str, ...], where: str | None) -> EpisodeSelection:
    try:
        return EpisodeSelection(episodes=episodes, where=where)
    except ValueError:
        raise click.UsageError("name the episodes (EPISODE...), or select them with --where QUERY") from None


def _value_or_file(value: object, value_flag: str, file: Path | None, file_flag: str, named: bool) -> None:
    """One value for the episodes named, or a file naming each episode with its own, never both."""
    if (value is None) == (file is None):
        raise click.UsageError(f"give {value_flag} (for the episodes named) or {file_flag} FILE")
    if file is not None and named:
        raise click.UsageError(f"{file_flag} names its episodes itself: give no EPISODE nor --where with it")


def _on_wait(notice: object) -> None:
    click.echo(worded(notice), err=True)  # type: ignore[arg-type]


def _report(store: str, manifest: StoreManifest | None, what: str, records: list[EpisodeRecord]) -> None:
    if manifest is None:
        click.echo(f"{store}: nothing to change ({what}), so no version was written")
        return
    opened = open_store(store)
    for r in records[:20]:
        click.echo(f"  {r.split.value:<5} {r.source_path}  {r.instruction!r}")
    if len(records) > 20:
        click.echo(f"  ... and {len(records) - 20} more")
    counts = ", ".join(f"{s.value} {manifest.split_episodes.get(s, 0)}" for s in Split)
    click.echo(f"{store}: version {opened.version}: {what}; {manifest.n_episodes} episodes ({counts}), "
               f"{manifest.n_frames} frames, train stats recomputed (`vla-data diff {store} {_parent(opened)}` shows "
               "the change)")


def _parent(opened: DatasetStore) -> str:
    """The version the current one was made from."""
    from pipelines.history import store_log

    history, _, _ = store_log(opened.location)
    return (history.versions[-1].parent or "") if history.versions else ""


@click.command("remove", epilog=EPISODE_HELP)
@click.argument("store", metavar="STORE")
@EPISODES
@WHERE
@NO_WAIT
def remove_cmd(store: str, episodes: tuple[str, ...], where: str | None, no_wait: bool) -> None:
    """Remove episodes from a store: a new version without them (the current one stays, readable as
    STORE@VERSION; `vla-data restore` brings it back). No frame is copied; the train stats are recomputed.

    \b
    Examples:
      vla-data remove dataset.zarr 12 episode_20251130_090000_1box_hori_left_core_close.h5
      vla-data remove dataset.zarr --where "scenario == '1box_hori_left'"
    """
    from vla_data.store.edits import remove

    manifest, removed = remove(_store(store), _selection(episodes, where), wait=not no_wait, on_wait=_on_wait)
    _report(store, manifest, f"{len(removed)} episode(s) removed", removed)


@click.command("relabel", epilog=EPISODE_HELP)
@click.argument("store", metavar="STORE")
@EPISODES
@WHERE
@click.option("--instruction", default=None, help="The new instruction of every episode named.")
@click.option("--from-csv", "from_csv", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A CSV with columns episode,instruction: one new instruction per episode.")
@NO_WAIT
def relabel_cmd(store: str, episodes: tuple[str, ...], where: str | None, instruction: str | None,
                from_csv: Path | None, no_wait: bool) -> None:
    """Give episodes a new instruction: a new version where only their label changed (frames, actions and content
    hash as they were; older versions keep the old label).

    \b
    Examples:
      vla-data relabel dataset.zarr 3 7 --instruction "Go to the red chair on the left"
      vla-data relabel dataset.zarr --from-csv fixes.csv
    """
    from vla_data.store.edits import read_relabel_csv, relabel

    _value_or_file(instruction, "--instruction TEXT", from_csv, "--from-csv", bool(episodes or where))
    if from_csv is not None:
        labels, selection = read_relabel_csv(from_csv), None
    else:
        try:
            labels = Relabel(instruction=instruction)
        except ValueError:
            fail("--instruction is empty: the policy would learn from no words; give the text the robot follows")
        selection = _selection(episodes, where)
    manifest, changed = relabel(_store(store), selection, labels, wait=not no_wait, on_wait=_on_wait)
    _report(store, manifest, f"{len(changed)} episode(s) relabelled", changed)


@click.command("resplit", epilog=EPISODE_HELP)
@click.argument("store", metavar="STORE")
@EPISODES
@WHERE
@click.option("--to", "to", type=click.Choice([s.value for s in Split]), default=None,
              help="The split the episodes named move to.")
@click.option("--split-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A CSV with columns episode,split (as build-splits --split-file): each episode to its split.")
@NO_WAIT
def resplit_cmd(store: str, episodes: tuple[str, ...], where: str | None, to: str | None, split_file: Path | None,
                no_wait: bool) -> None:
    """Move episodes to another split: a new version with the train stats recomputed over the new train split.
    A move that leaves train empty, or empties a split, is refused.

    \b
    Examples:
      vla-data resplit dataset.zarr 4 9 --to val
      vla-data resplit dataset.zarr --where "scenario == 'corridor'" --to test
      vla-data resplit dataset.zarr --split-file splits.csv
    """
    from vla_data.build.splits import SplitError, read_split_file
    from vla_data.store.edits import resplit

    _value_or_file(to, "--to SPLIT", split_file, "--split-file", bool(episodes or where))
    if split_file is not None:
        try:
            move, selection = Resplit(per_episode=read_split_file(split_file)), None
        except SplitError as exc:
            fail(str(exc))
    else:
        move, selection = Resplit(to=Split(to)), _selection(episodes, where)
    manifest, moved = resplit(_store(store), selection, move, wait=not no_wait, on_wait=_on_wait)
    _report(store, manifest, f"{len(moved)} episode(s) moved" + (f" to {to}" if to else ""), moved)


@click.command("restore")
@click.argument("store", metavar="STORE")
@click.argument("version")
@NO_WAIT
def restore_cmd(store: str, version: str, no_wait: bool) -> None:
    """Make an older version current again, as a new version equal to it (its episodes, splits, labels and stats):
    a rollback that keeps every version between in the history. VERSION is a version id or a tag.

    \b
    Examples:
      vla-data restore dataset.zarr v000003-9a1b2c3d
      vla-data restore dataset.zarr before-cleanup
    """
    from vla_data.store.edits import restore

    manifest, restored = restore(_store(store), version, wait=not no_wait, on_wait=_on_wait)
    _report(store, manifest, f"restored {restored}", [])


@click.command("diff")
@click.argument("store", metavar="STORE")
@click.argument("a", metavar="A")
@click.argument("b", metavar="[B]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the difference as JSON.")
def diff_cmd(store: str, a: str, b: str | None, as_json: bool) -> None:
    """What version B (the current one when not given) changed against version A: episodes added, removed,
    relabelled and moved between splits, and the train stats of each. A and B are version ids or tags.

    \b
    Examples:
      vla-data diff dataset.zarr v000002-1f0c9a3e
      vla-data diff dataset.zarr paper-v1 v000007-0b1c2d3e --json
    """
    from pipelines.diff import diff_versions, render_diff
    _store(store)
    diff = diff_versions(store, a, b)
    names = open_store(store).manifest.actions.names
    click.echo(diff.model_dump_json(indent=2) if as_json else render_diff(diff, list(names)))


@click.command("merge")
@click.argument("stores", nargs=-1, required=True, metavar="STORE...")
@click.option("-o", "--out", "out", required=True, help="The new store (a local folder or a URL where nothing is).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes that copy the frames, whole shards each.")
def merge_cmd(stores: tuple[str, ...], out: str, workers: int) -> None:
    """Merge two or more stores (each STORE or STORE@VERSION) into a new one: every episode keeps its split,
    an episode whose content an earlier store already gave is left out and listed, and the train stats are
    computed over the merged train split. The stores must share preprocessing, cameras and action channels;
    otherwise each difference is named and nothing is written. The new store's history names every store and
    version it came from.

    \b
    Examples:
      vla-data merge day1.zarr day2.zarr -o both.zarr
      vla-data merge day1.zarr@paper-v1 s3://fleet/day2.zarr -o both.zarr --workers 2
    """
    from pipelines.build_splits import BuildBar
    from vla_data.store.merge import merge

    with BuildBar() as bar:
        manifest, duplicates = merge(list(stores), out, workers, progress=bar, on_wait=_on_wait)
    for d in duplicates:
        click.echo(f"left out (same content as {d.same_as}): {d.source_path}")
    counts = ", ".join(f"{s.value} {manifest.split_episodes.get(s, 0)}" for s in Split)
    click.echo(f"wrote {out} version {open_store(out).version}: {manifest.n_episodes} episodes ({counts}), "
               f"{manifest.n_frames} frames from {len(stores)} stores; {len(duplicates)} duplicate(s) left out")
