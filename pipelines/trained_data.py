"""What a checkpoint trained on, against the data it is asked to score: the episodes its training version held
in the train split, matched by content hash (so a copy of an episode in another store or version counts)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.history import DataPin, VersionChange
from vla_data.common.refusal import Fix, Refusal
from vla_data.store.history import change_between, episode_table
from vla_data.store.reader import DatasetStore, StoreError, open_store


class TrainOverlap(Refusal):
    """The split asked for holds episodes the checkpoint trained on."""


@dataclass(frozen=True)
class TrainedData:
    """How the scored data relates to the checkpoint's training data."""

    same: bool  # exactly the version trained on (the manifests match)
    change: VersionChange | None  # what changed from the trained version to the scored one (same store only)
    overlap: list[str]  # source paths of scored episodes that were train episodes of the trained version
    readable: bool  # the trained version could be read (else overlap is unknown)


def trained_data(trained: DataPin | None, train_split: str, scored: DatasetStore, scored_pin: DataPin, split: str
                 ) -> TrainedData | None:
    """``None`` for a checkpoint that does not record its data; else the comparison, reading the trained version
    (whose ``train_split`` the checkpoint learned from)."""
    if trained is None:
        return None
    if trained.manifest_sha256 == scored_pin.manifest_sha256:
        return TrainedData(True, None, [], True)
    try:
        then = episode_table(open_store(trained.address).objects)
    except StoreError:
        return TrainedData(False, None, [], False)
    now = episode_table(scored.objects)
    train_hashes = {r.content_hash for r in then if r.split.value == train_split}
    overlap = [r.source_path for r in now if r.split.value == split and r.content_hash in train_hashes]
    change = change_between(then, now) if trained.store == scored_pin.store else None
    return TrainedData(False, change, overlap, True)


def refuse_overlap(found: TrainedData | None, split: str, allowed: bool) -> None:
    if found is None or not found.overlap or allowed:
        return
    listed = ", ".join(found.overlap[:3]) + (f" and {len(found.overlap) - 3} more" if len(found.overlap) > 3 else "")
    raise TrainOverlap(f"split {split} holds {len(found.overlap)} episode(s) the checkpoint trained on ({listed}): "
                       "its score would not say how the policy does on data it has not seen",
                       Fix({"allow_train_overlap": True}, "to score it knowingly"))
