"""The store's history: `vla-data log` (its versions) and `vla-data tag` (names for versions)."""

from __future__ import annotations

import click

from pipelines.cli.errors import fail
from pipelines.cli.flags import worded
from pipelines.history import log_json, render_log, store_log
from vla_data.store.history import create_tag, delete_tag, resolve
from vla_data.store.location import StoreLocation
from vla_data.store.ownership import Ownership, ownership_of
from vla_data.store.writer_lock import writer_lock


def store_location(store: str) -> StoreLocation:
    location = StoreLocation.of(store)
    kind = ownership_of(location)
    if kind == Ownership.absent:
        fail(f"{store} does not exist: give a store that `vla-data build-splits SRC -o OUT.zarr` wrote")
    if kind not in (Ownership.store, Ownership.incomplete):
        fail(f"{store} is not a vla-data store; a store is what `vla-data build-splits SRC -o OUT.zarr` writes")
    return location


@click.command("log")
@click.argument("store", metavar="STORE")
@click.option("-n", "--max-count", type=click.IntRange(min=1), default=None, help="Show only the newest N versions.")
@click.option("--json", "as_json", is_flag=True, help="Print the history and the tags as JSON.")
def log_cmd(store: str, max_count: int | None, as_json: bool) -> None:
    """List a store's versions, newest first: id, tags, time, user, host, the command that made it, and what it
    changed (episodes added, removed, relabelled, moved between splits; episodes and frames it holds).

    Every version stays readable as STORE@VERSION (or STORE@TAG) until `vla-data gc` drops it.

    \b
    Examples:
      vla-data log dataset.zarr
      vla-data info dataset.zarr@v000002-1f0c9a3e
    """
    location = store_location(store)
    history, named, current = store_log(location)
    click.echo(log_json(history, named, current) if as_json else render_log(location, history, named, current, max_count))


@click.command("tag")
@click.argument("store", metavar="STORE")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--delete", is_flag=True, help="Delete the tag NAME (the version stays; gc may then drop it).")
def tag_cmd(store: str, name: str, version: str | None, delete: bool) -> None:
    """Name a version (the current one unless VERSION is given): STORE@NAME then opens it, and gc keeps it.
    Tags never move: a name that exists is refused; delete it first, explicitly.

    \b
    Examples:
      vla-data tag dataset.zarr paper-v1
      vla-data tag dataset.zarr before-cleanup v000003-9a1b2c3d
      vla-data tag dataset.zarr paper-v1 --delete
    """
    location = store_location(store)
    with writer_lock(location, wait=True, on_wait=lambda notice: click.echo(worded(notice), err=True)):
        if delete:
            if version is not None:
                raise click.UsageError("--delete takes the tag NAME only")
            record = delete_tag(location, name)
            click.echo(f"deleted tag {record.name} (it named {record.version})")
            return
        history, _, current = store_log(location)
        if current is None:
            fail(f"{store}: no committed version to tag yet")
        target = resolve(location, version, history) if version is not None else current
        record = create_tag(location, name, target)
    click.echo(f"tagged {record.version} as {record.name}: open it as {store}@{record.name}")
