"""Episode splits: a stable hash of (seed, content hash) per episode, then the fewest moves that make
every stratum with two or more episodes appear in train and val. Episodes already assigned never move."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from schemas.store import Split, SplitConfig, SplitFileRow, Stratify
from vla_data.common.refusal import Fix, Refusal


class SplitError(Refusal, ValueError):
    """The episodes cannot be split as asked (too few of them)."""


def split_score(seed: int, content_hash: str) -> float:
    """A number in [0, 1) fixed by the seed and the episode's content, independent of every other episode."""
    digest = hashlib.sha256(f"{seed}:{content_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    content_hashes: Sequence[str],
    strata: Sequence[str],
    config: SplitConfig,
    existing: Mapping[str, Split] | None = None,
) -> list[Split]:
    """The split of each episode. ``existing`` (content hash -> split) is kept as it is, and never moved."""
    existing = existing or {}
    scores = [split_score(config.seed, h) for h in content_hashes]
    splits: list[Split] = []
    for h, u in zip(content_hashes, scores, strict=True):
        if h in existing:
            splits.append(existing[h])
        elif u < config.test_ratio:
            splits.append(Split.test)
        elif u < config.test_ratio + config.val_ratio:
            splits.append(Split.val)
        else:
            splits.append(Split.train)
    movable = [h not in existing for h in content_hashes]

    def ensure(members: list[int], wanted: Split) -> None:
        """If no member is in ``wanted``, move one movable member there, never the group's last train one."""
        if any(splits[i] == wanted for i in members):
            return
        n_train = sum(splits[i] == Split.train for i in members)
        donors = [i for i in members if movable[i] and (splits[i] != Split.train or n_train > 1)]
        if donors:  # the donor whose score lies nearest the wanted split (train is the high end)
            pick = max(donors, key=scores.__getitem__) if wanted == Split.train else min(donors, key=scores.__getitem__)
            splits[pick] = wanted
            movable[pick] = False

    if config.stratify != Stratify.none:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, stratum in enumerate(strata):
            groups[stratum].append(i)
        for members in groups.values():
            if len(members) >= 2:
                ensure(members, Split.train)
                ensure(members, Split.val)
    everyone = list(range(len(content_hashes)))
    ensure(everyone, Split.train)
    ensure(everyone, Split.val)
    lacking = [s.value for s in (Split.train, Split.val) if s not in splits]
    if lacking and config.split_file is not None and not any(movable):
        raise SplitError(
            f"{config.split_file}: the split file assigns no episode to {' or '.join(lacking)}; add rows with split "
            f"{' and '.join(lacking)} (a store needs at least one train and one val episode), like\n{SPLIT_FILE_EXAMPLE}"
        )
    if lacking:
        raise SplitError(
            f"{len(splits)} episode(s) cannot give at least one train and one val episode; record more episodes"
        )
    return splits


SPLIT_FILE_EXAMPLE = "episode,split\n1box_hori_left_000.h5,train\n1box_hori_left_001.h5,val"


def read_split_file(path: Path) -> dict[str, Split]:
    """A ``--split-file`` CSV (columns ``episode``, ``split``; other columns ignored) as episode -> split."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise SplitError(f"{path}: cannot read the split file ({exc})") from exc
    missing = sorted({"episode", "split"} - set(table.columns))
    if missing:
        raise SplitError(f"{path}: the split file lacks column(s) {missing}; write it like\n{SPLIT_FILE_EXAMPLE}")
    rows: dict[str, Split] = {}
    for line, raw in enumerate(table.to_dict("records"), start=2):
        try:
            row = SplitFileRow.model_validate({k: str(v).strip() for k, v in raw.items()})
        except ValidationError:
            raise SplitError(
                f"{path}, line {line}: {raw['episode']!r},{raw['split']!r}: the episode must be named and the "
                f"split one of {', '.join(s.value for s in Split)}"
            ) from None
        key = Path(row.episode).as_posix()
        if rows.get(key, row.split) != row.split:
            raise SplitError(f"{path}, line {line}: {row.episode} is listed as both {rows[key].value} and {row.split.value}")
        rows[key] = row.split
    return rows


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root``; an episode DIR#k of a source that is ``root`` itself, as its name."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def match_split_file(rows: Mapping[str, Split], paths: Sequence[Path], root: Path) -> tuple[dict[Path, Split], list[str]]:
    """The split of every path by its row, and the rows that named no path.

    A row names an episode by its path relative to ``root`` (the folder the sources share), its file name
    (when no other source has it) or its absolute path. Every path must be named, exactly once.
    """
    by_key: dict[str, set[Path]] = defaultdict(set)
    for p in paths:
        for key in (p.name, p.resolve().as_posix(), _relative(p, root)):
            by_key[key].add(p)
    assigned: dict[Path, Split] = {}
    unmatched = []
    for key, split in rows.items():
        hits = by_key.get(key, set())
        if not hits:
            unmatched.append(key)
            continue
        if len(hits) > 1:
            raise SplitError(
                f"split file row {key!r} names {len(hits)} sources ({', '.join(sorted(str(p) for p in hits)[:3])}); "
                f"name them by their path relative to {root}"
            )
        (hit,) = hits
        if assigned.get(hit, split) != split:
            raise SplitError(f"the split file gives {hit} two splits ({assigned[hit].value} and {split.value})")
        assigned[hit] = split
    unlisted = [p for p in paths if p not in assigned]
    if unlisted:
        names = ", ".join(_relative(p, root) for p in unlisted[:5])
        raise SplitError(
            f"{len(unlisted)} source episode(s) are not in the split file ({names}{', ...' if len(unlisted) > 5 else ''}); "
            "add a row for each",
            Fix({"split_file": False}, "to split by the ratios instead"))
    return assigned, unmatched
