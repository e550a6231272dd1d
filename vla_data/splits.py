"""Episode splits: a stable hash of (seed, content hash) per episode, then the fewest moves that make
every stratum with two or more episodes appear in train and val. Episodes already assigned never move."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence

from schemas.store import Split, SplitConfig, Stratify


class SplitError(ValueError):
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
    """The split of each episode. ``existing`` (content hash -> split) is kept as it is."""
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
    if Split.train not in splits or Split.val not in splits:
        raise SplitError(
            f"{len(splits)} episode(s) cannot give at least one train and one val episode; record more episodes"
        )
    return splits
