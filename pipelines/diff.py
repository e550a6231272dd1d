"""`vla-data diff`: what one version of a store changed against another, and the train stats before and after."""

from __future__ import annotations

from schemas.history import VersionDiff
from schemas.store import NormStats
from vla_data.store.history import change_between
from vla_data.store.reader import open_store


def diff_versions(store: str, a: str, b: str | None) -> VersionDiff:
    """Version ``b`` (the current one when None) against version ``a`` (ids or tags)."""
    older, newer = open_store(f"{store}@{a}"), open_store(f"{store}@{b}" if b is not None else store)
    return VersionDiff(store=str(newer.location), a=older.version, b=newer.version,
                       change=change_between(older.records(), newer.records()),
                       stats_a=older.manifest.stats, stats_b=newer.manifest.stats)


def _stats_lines(a: NormStats, b: NormStats, names: list[str]) -> list[str]:
    lines = [f"train stats {'channel':<12} {'mean':>21} {'std':>21} {'frames':>15}"]
    for name, x, y in zip(names, a.action, b.action, strict=False):
        lines.append(f"            {name:<12} {x.mean:>9.4f} -> {y.mean:<9.4f} {x.std:>9.4f} -> {y.std:<9.4f} "
                     f"{x.count:>6} -> {y.count:<6}")
    mean_a = ", ".join(f"{v:.3f}" for v in a.image_mean)
    mean_b = ", ".join(f"{v:.3f}" for v in b.image_mean)
    lines.append(f"            {'image mean':<12} ({mean_a}) -> ({mean_b})")
    return lines


def render_diff(diff: VersionDiff, action_names: list[str]) -> str:
    c = diff.change
    lines = [f"{diff.store}: {diff.a} -> {diff.b}: {c.summary()}"]
    for kind, names in (("added", c.added), ("removed", c.removed), ("relabelled", c.relabelled), ("moved", c.moved)):
        lines += [f"  {kind}: {name}" for name in names]
    return "\n".join(lines + _stats_lines(diff.stats_a, diff.stats_b, action_names))
