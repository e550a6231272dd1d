"""What a checkpoint trained on, against the data it is asked to score: the episodes its training version held
in the train split, matched by content hash (so a copy of an episode in another store or version counts)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.history import DataPin, VersionChange
from schemas.store import Split
from schemas.train import CheckpointMeta
from vla_data.common.refusal import Fix, Refusal
from vla_data.store.history import change_between, episode_table
from vla_data.store.reader import DatasetStore, StoreError, open_store, pin


class TrainOverlap(Refusal):
    """The split asked for holds episodes the checkpoint trained on."""


@dataclass(frozen=True)
class TrainedData:
    """How the scored data relates to the checkpoint's training data."""

    change: VersionChange | None  # what changed from the trained version to the scored one (same store only)
    overlap: list[str]  # source paths of scored episodes that were train episodes of the trained version
    readable: bool  # the trained version could be read (else overlap is unknown)


def trained_data(trained: DataPin | None, train_split: str, scored: DatasetStore, scored_pin: DataPin,
                 split: str | None) -> TrainedData | None:
    """``None`` for a checkpoint that does not record its data; else the comparison, reading the trained version
    (whose ``train_split`` the checkpoint learned from)."""
    if trained is None:
        return None
    if trained.manifest_sha256 == scored_pin.manifest_sha256:
        return TrainedData(None, [], True)
    try:
        then = episode_table(open_store(trained.address).objects)
    except StoreError:
        return TrainedData(None, [], False)
    now = episode_table(scored.objects)
    train_hashes = {r.content_hash for r in then if r.split.value == train_split}
    overlap = [r.source_path for r in now if split in (None, r.split.value) and r.content_hash in train_hashes]
    change = change_between(then, now) if trained.store == scored_pin.store else None
    return TrainedData(change, overlap, True)


def data_line(scored: DataPin | None, trained: DataPin | None, change: VersionChange | None,
              overlap: list[str], fallback: str, checked: bool = True) -> str:
    """Which data is scored, and whether it is the data the checkpoint trained on (and what changed since)."""
    where = scored.address if scored is not None else fallback
    if trained is None:
        return f"data: {where} (the checkpoint does not record the version it trained on)"
    if scored is not None and trained.manifest_sha256 == scored.manifest_sha256:
        return f"data: {where}, the version the checkpoint trained on"
    line = f"data: {where}; the checkpoint trained on {trained.address}: not the same data"
    if change is not None:
        line += f" (since: {change.summary()})"
    if overlap:
        line += f"; {len(overlap)} scored episode(s) were training episodes (allowed)"
    if not checked:
        line += "; that version is no longer readable (gc dropped it?), so training episodes could not be checked for"
    return line


def trained_data_line(meta: CheckpointMeta, store: DatasetStore, split: Split | None) -> str:
    """``data_line`` for a checkpoint shown on ``store`` (view --run: the split shown, or every episode)."""
    scored = pin(store)
    found = trained_data(meta.data, meta.train_config.data.train_split.value, store, scored,
                         split.value if split is not None else None)
    overlap = found.overlap if found is not None else []
    line = data_line(scored, meta.data, found.change if found else None, [], str(store.location),
                     found.readable if found else True)
    return line + (f"; {len(overlap)} shown episode(s) were training episodes" if overlap else "")


def refuse_overlap(found: TrainedData | None, split: str, allowed: bool) -> None:
    if found is None or not found.overlap or allowed:
        return
    listed = ", ".join(found.overlap[:3]) + (f" and {len(found.overlap) - 3} more" if len(found.overlap) > 3 else "")
    raise TrainOverlap(f"split {split} holds {len(found.overlap)} episode(s) the checkpoint trained on ({listed}): "
                       "its score would not say how the policy does on data it has not seen",
                       Fix({"allow_train_overlap": True}, "to score it knowingly"))
