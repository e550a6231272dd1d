"""`vla-data info`: a store described for a person, or as JSON for another tool."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from vla_data.store.reader import DatasetStore, stored_bytes
from vla_data.store.history import read_history
from vla_data.store.versions import leftovers, read_pointer
from vla_data.store.writer_lock import lease_holder


def _size_mb(paths: list[Path]) -> float:
    """What the sources take on disk: a file's size, a bag folder's files together (each source once)."""
    files = {f for p in set(paths) for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()}
    return sum(f.stat().st_size for f in files) / 1e6


def render_info(store: DatasetStore) -> str:
    m, table = store.manifest, store.episodes
    pre = m.preprocessing
    history = read_history(store.location, read_pointer(store.location)) if store.version else None
    record = next((r for r in history.versions if r.version == store.version), None) if history else None
    out = [
        f"store {store.location}  (format {m.format_version}, built by vla-data {m.tool_version}, {m.created})",
        *([f"version {store.version}" + ("" if store.version == history.versions[-1].version else " (not the current one)")
           + (f": {record.change.summary()}; made by `{record.command}`" if record else "")] if history else []),
        f"episodes {m.n_episodes}, frames {m.n_frames}; "
        + ", ".join(f"{s.value} {m.split_episodes[s]} episodes / {m.split_frames[s]} frames" for s in m.split_episodes),
        f"preprocessing: every camera -> rgb {pre.image_size}x{pre.image_size}, "
        f"{pre.resize.value}, {pre.interpolation.value}",
        "cameras: " + ", ".join(f"{f.name} <- `{f.source}` ({f.color_order.value if f.color_order else '?'})"
                                + (f", topic {f.topic}" if f.topic else "") for f in m.cameras),
        f"actions: {', '.join(f'{n} (channel {c})' for n, c in zip(m.actions.names, m.actions.channels, strict=True))}",
        "features: " + "; ".join(f.describe() for f in m.features),
        "",
        "episodes per scenario and split:",
        pd.crosstab(table["scenario"], table["split"]).to_string(),
        "",
        f"train stats (normalisation {m.stats.mode.value}):",
        pd.DataFrame([c.model_dump() for c in m.stats.action], index=m.actions.names).to_string(float_format="{:.4f}".format),
        f"image mean {[round(v, 4) for v in m.stats.image_mean]}, std {[round(v, 4) for v in m.stats.image_std]}",
    ]
    store_mb = stored_bytes(store) / 1e6

    sources = [Path(p) for p in table["source_path"] if Path(p).exists()]
    if sources:
        source_mb = _size_mb(sources)
        percent = 100 * store_mb / max(source_mb, 1e-9)
        share = f"{percent:.1f}%" if percent >= 0.1 else "under 0.1%"
        out.append(f"size on disk: {store_mb:.1f} MB, {share} of the {source_mb:.1f} MB of sources")
    else:
        out.append(f"size on disk: {store_mb:.1f} MB")
    left = leftovers(store.location)
    if left:
        out.append(f"leftovers of killed builds (not read; the next build or `vla-data gc {store.location}` removes "
                   f"them): {', '.join(v.describe() for v in left)}")
    if history is not None and len(history.versions) > 1:
        out.append(f"{len(history.versions)} versions in the history (`vla-data log {store.location}`)")
    holder = lease_holder(store.location) if store.location.url is not None else None
    if holder is not None:
        out.append(f"being written by {holder.describe()}")
    return "\n".join(out)


def store_json(store: DatasetStore) -> str:
    return json.dumps(
        {"manifest": store.manifest.model_dump(mode="json"), "episodes": store.episodes.to_dict("records")}, indent=2
    )
