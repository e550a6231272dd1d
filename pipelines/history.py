"""`vla-data log` and `vla-data tag`: a store's versions, newest first, with their tags and what each changed."""

from __future__ import annotations

import json

from schemas.history import History, TagRecord
from vla_data.store.history import present, read_history, tags
from vla_data.store.location import StoreLocation
from vla_data.store.versions import read_pointer


def store_log(store: StoreLocation) -> tuple[History, dict[str, TagRecord], str | None]:
    """The current version's history, the tags, and the current version id (None: nothing committed)."""
    pointer = read_pointer(store)
    return read_history(store, pointer), tags(store), pointer.version if pointer is not None else None


def render_log(store: StoreLocation, history: History, named: dict[str, TagRecord], current: str | None,
               limit: int | None = None) -> str:
    """Each version, newest first: id, tags, time, who and the command, and what changed."""
    by_version: dict[str, list[str]] = {}
    for tag in named.values():
        by_version.setdefault(tag.version, []).append(tag.name)
    lines = []
    records = list(reversed(history.versions))[:limit]
    for r in records:
        marks = [*(["current"] if r.version == current else []), *sorted(by_version.get(r.version, [])),
                 *([] if present(store, r.version) else ["data removed by gc"])]
        lines.append(f"{r.version}" + (f"  ({', '.join(marks)})" if marks else ""))
        lines.append(f"    {r.created}  {r.user}@{r.host}  {r.command}" if r.host else f"    {r.created}  {r.command}")
        lines.append(f"    {r.change.summary()}")
    if not lines:
        return f"{store}: no committed version yet"
    return "\n".join(lines)


def log_json(history: History, named: dict[str, TagRecord], current: str | None) -> str:
    return json.dumps({"current": current, "versions": [r.model_dump(mode="json") for r in history.versions],
                       "tags": [t.model_dump(mode="json") for t in named.values()]}, indent=2)
