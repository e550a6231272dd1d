"""The dataset store on disk: zarr v3 arrays plus sidecar files, complete only once ``manifest.json`` exists.

```
dataset.zarr/
  zarr.json, data/rgb (N,S,S,3) uint8, data/action (N,A) float32, meta/episode_ends (E,) int64
  episodes.csv     the episode table (schemas.store.EpisodeRecord), pandas.read_csv reads it
  build_log.json   what each build added and left out
  vla-data-store.json  schemas.store.StoreMarker, written first: the proof that vla-data made the folder
  manifest.json    schemas.store.StoreManifest, written last
```
A store is built in a staging folder beside its destination and published by renames, so a reader sees
either no store, the previous complete store, or the new complete one. Only folders vla-data can prove it
made are ever replaced or deleted (``vla_data.ownership``); one build at a time writes a store
(``vla_data.writer_lock``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import ZstdCodec

from schemas.store import FORMAT_VERSION, BuildLog, EpisodeRecord, StoreManifest, StoreMarker
from vla_data.ownership import MANIFEST, MARKER, Ownership, OwnershipError, listing, mark, ownership, remove_ours

RGB = "data/rgb"  # the frames array
ACTION = "data/action"
EPISODES = "episodes.csv"
BUILD_LOG = "build_log.json"
FRAMES_PER_SHARD = 64
ZSTD = ZstdCodec(level=3)


class StoreError(Exception):
    """A store that cannot be used as it is; the message says why and what to do."""


@dataclass
class DatasetStore:
    path: Path
    manifest: StoreManifest
    episodes: pd.DataFrame
    group: zarr.Group

    @property
    def rgb(self) -> zarr.Array:
        return self.group[RGB]  # type: ignore[return-value]

    @property
    def rgb_path(self) -> Path:
        """The frames array's folder, for processes that open it themselves (loader workers, build workers)."""
        return self.path / RGB

    @property
    def action(self) -> zarr.Array:
        return self.group[ACTION]  # type: ignore[return-value]

    @property
    def episode_ends(self) -> np.ndarray:
        return np.asarray(self.group["meta/episode_ends"][:])

    def episode_range(self, episode: int) -> tuple[int, int]:
        ends = self.episode_ends
        return (int(ends[episode - 1]) if episode else 0), int(ends[episode])

    def build_log(self) -> BuildLog:
        """What each build of this store added, kept, replaced and left out."""
        return BuildLog.model_validate_json((self.path / BUILD_LOG).read_text())

    def split_actions(self, split: str) -> np.ndarray:
        """Every action row of one split's episodes, (N, A) float32 in physical units."""
        ends, action = self.episode_ends, np.asarray(self.action[:], np.float32)
        rows = [np.arange(ends[e] - n, ends[e]) for e, n, s in
                zip(self.episodes["episode"], self.episodes["n_frames"], self.episodes["split"], strict=True) if s == split]
        return action[np.concatenate(rows)] if rows else np.zeros((0, action.shape[1]), np.float32)


def staging_path(out: Path, pid: int) -> Path:
    return out.with_name(f".{out.name}.staging-{pid}")


def create_arrays(root: Path, n_frames: int, image_size: int, action_dim: int, marker: StoreMarker) -> zarr.Group:
    """A new store folder claimed with ``marker``, then empty arrays for ``n_frames``: one frame per inner chunk,
    ``FRAMES_PER_SHARD`` frames per shard, zstd."""
    mark(root, marker)
    group = zarr.open_group(root, mode="a", zarr_format=3)
    s = image_size
    group.create_array(
        RGB,
        shape=(n_frames, s, s, 3),
        chunks=(1, s, s, 3),
        shards=(FRAMES_PER_SHARD, s, s, 3),
        dtype="uint8",
        compressors=ZSTD,
        dimension_names=("frame", "height", "width", "channel"),
    )
    group.create_array(
        ACTION,
        shape=(n_frames, action_dim),
        chunks=(max(1, min(n_frames, 65536)), action_dim),
        dtype="float32",
        compressors=ZSTD,
        dimension_names=("frame", "action"),
    )
    return group


def write_episode_ends(group: zarr.Group, n_frames: list[int]) -> None:
    ends = np.cumsum(np.asarray(n_frames, np.int64))
    group.create_array("meta/episode_ends", data=ends, chunks=(max(1, len(ends)),), compressors=ZSTD)


def object_checksums(root: Path) -> dict[str, str]:
    """sha256 of every stored object (every file but the manifest), by path relative to the store."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def write_table(root: Path, records: list[EpisodeRecord]) -> None:
    pd.DataFrame([r.model_dump(mode="json") for r in records]).to_csv(root / EPISODES, index=False)


def finalize(root: Path, manifest: StoreManifest) -> None:
    """Write the manifest, last: from here on the store is complete."""
    (root / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")


def _aside(out: Path) -> Path:
    return out.with_name(f".{out.name}.previous")


def publish(staging: Path, out: Path) -> None:
    """Move a finished staging store to ``out``, replacing a previous store there (only a vla-data store, or
    an empty folder: anything else raises ``OwnershipError`` and stays as it is).

    The previous store is first renamed aside (``out`` then briefly holds nothing, never a partial store),
    the new one renamed in, and the old one deleted. ``recover`` undoes a crash between the two renames.
    """
    aside = _aside(out)
    remove_ours(aside)
    kind = ownership(out)
    if kind == Ownership.foreign:
        raise OwnershipError(f"{out} is not a vla-data store ({listing(out)}); it was not replaced")
    if kind == Ownership.empty:
        out.rmdir()
    elif kind != Ownership.absent:
        out.rename(aside)
    staging.rename(out)
    remove_ours(aside)


def recover(out: Path) -> None:
    """With the writer lock held: after a crash mid-publish, put the previous complete store back; remove
    staging folders of builds that died (vla-data's own only; a folder it cannot prove it made stays)."""
    aside = _aside(out)
    if ownership(out) == Ownership.absent and ownership(aside) == Ownership.store:
        aside.rename(out)
    for stale in out.parent.glob(f".{out.name}.staging-*"):
        if ownership(stale) != Ownership.foreign:
            remove_ours(stale)


def open_store(path: Path) -> DatasetStore:
    """Open a complete store, or raise ``StoreError`` saying what is wrong with it."""
    if not path.exists():
        raise StoreError(f"{path}: no such store; build one with `vla-data build-splits SRC -o {path}`")
    manifest_path = path / MANIFEST
    if not path.is_dir() or not manifest_path.is_file():
        if path.is_dir() and (path / MARKER).is_file():
            raise StoreError(
                f"{path}: incomplete store (vla-data's, without its {MANIFEST}: its build did not finish); "
                f"build it again with `vla-data build-splits SRC -o {path} --overwrite`"
            )
        raise StoreError(f"{path}: not a vla-data store ({listing(path)}); a store is what "
                         "`vla-data build-splits SRC -o OUT.zarr` writes")
    try:
        manifest = StoreManifest.model_validate_json(manifest_path.read_text())
    except ValueError as exc:
        raise StoreError(f"{manifest_path}: unreadable manifest ({exc}); rebuild the store") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise StoreError(
            f"{path}: store format {manifest.format_version}, this vla-data reads {FORMAT_VERSION}; rebuild it"
        )
    try:
        episodes = pd.read_csv(path / EPISODES, keep_default_na=False)
        group = zarr.open_group(path, mode="r", zarr_format=3)
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"{path}: damaged store ({exc}); run `vla-data info {path} --verify`") from exc
    return DatasetStore(path=path, manifest=manifest, episodes=episodes, group=group)


def verify(store: DatasetStore) -> list[str]:
    """Recompute every checksum; name each damaged or missing object, with the frames it holds."""
    found = object_checksums(store.path)
    problems = []
    ends = store.episode_ends
    for name, digest in store.manifest.checksums.items():
        if found.get(name) == digest:
            continue
        what = "missing" if name not in found else "checksum mismatch"
        problems.append(f"{name}: {what}{_frames_of(name, ends)}")
    problems += [f"{name}: not in the manifest" for name in found.keys() - store.manifest.checksums.keys()]
    return problems


def _frames_of(name: str, ends: np.ndarray) -> str:
    """For a shard of data/rgb or data/action, the frame and episode range it holds."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != "data" or parts[2] != "c":
        return ""
    per_object = FRAMES_PER_SHARD if parts[1] == "rgb" else None
    if per_object is None:
        return f" (array data/{parts[1]})"
    first = int(parts[3]) * per_object
    last = min(first + per_object, int(ends[-1]) if len(ends) else first) - 1
    e0, e1 = (int(np.searchsorted(ends, f, side="right")) for f in (first, last))
    return f" (array data/rgb, frames {first}..{last}, episodes {e0}..{e1})"
