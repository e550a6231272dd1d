"""Reading a store: ``open_store`` opens the version ``current.json`` names (or ``STORE@REF``; the layout:
``vla_data.store.layout``) as a ``DatasetStore``, whose episodes' frames lie in segments (``vla_data.store.spans``)
and are verified shard by shard the first time they are read; ``verify`` checks every object the version
references.

A reader sees the previous complete version or the new one (``vla_data.store.versions``), local or by URL
(``vla_data.store.location``). A store built before versions (its manifest at the top) is read as it is.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from pydantic import ValidationError

from schemas.history import DataPin
from schemas.segments import SegmentEpisode, SegmentRecord
from schemas.store import (
    READABLE_FORMATS,
    BuildLog,
    EpisodeRecord,
    Feature,
    FeatureKind,
    StoreManifest,
    StorePointer,
)
from vla_data import __version__
from vla_data.store.location import LocationError, StoreLocation, storage_errors
from vla_data.common.ranges import ends_of, episode_of, episode_range, episode_ranges, episode_starts
from vla_data.store.history import StoreAddress, VersionError, parse_address, read_history, resolve
from vla_data.store.errors import StoreError
from vla_data.store.layout import (
    BUILD_LOG,
    DATA,
    EPISODES,
    MANIFEST,
    MARKER,
    POINTER,
    SEGMENT,
    array_path,
    segment_prefix,
)
from vla_data.store.ownership import listing
from vla_data.common.refusal import Fix
from vla_data.store.spans import ArraySpan, JoinedArray, ShardVerifier, SpanReader
from vla_data.store.writer_lock import active_writer
from vla_data.store.versions import PointerError, objects_of, read_pointer

FRAMES_PER_SHARD = 64


@dataclass
class DatasetStore:
    """A complete store, opened for reading (``open_store``), local or by URL: one of its versions."""

    location: StoreLocation  # the store, as it was given
    objects: StoreLocation  # where the version's objects lie (``versions/<id>``; the store itself before versions)
    manifest: StoreManifest
    episodes: pd.DataFrame
    version: str | None = None  # the version opened (None: a store from before versions)
    # derived once from the version (which never changes): each array's spans, the episode ends, the segments'
    # records and their episodes by hash, the actions, the reader
    _spans: dict[str, list[ArraySpan]] = field(default_factory=dict, repr=False)
    _ends: np.ndarray | None = field(default=None, repr=False)
    _segments: dict[str, SegmentRecord] = field(default_factory=dict, repr=False)
    _segment_episodes: dict[str, dict[str, SegmentEpisode]] = field(default_factory=dict, repr=False)
    _action: np.ndarray | None = field(default=None, repr=False)
    _reader: SpanReader | None = field(default=None, repr=False)

    @property
    def cameras(self) -> list[Feature]:
        """The camera features, in the order the policy reads them."""
        return self.manifest.cameras

    def _camera_feature(self, name: str) -> Feature:
        for f in self.manifest.cameras:
            if f.name == name:
                return f
        raise StoreError(f"{self.location}: no camera {name!r}; the store holds camera(s) "
                         f"{', '.join(self.manifest.camera_names)}")

    def root_of(self, segment: str) -> StoreLocation:
        """Where an episode's frames lie: its segment, or the version itself (formats 1 and 2)."""
        return self.location.child(segment_prefix(segment)) if segment else self.objects

    def spans(self, name: str, episodes: Iterable[int] | None = None) -> list[ArraySpan]:
        """Where each of ``episodes`` (positions in the table; all when None) has its rows of array ``name``."""
        if name not in self._spans:
            table = self.episodes
            n = table["n_frames"].to_numpy(np.int64)
            if "segment" in table and (table["segment"].astype(str) != "").all():
                segments = table["segment"].astype(str).tolist()
                starts = table["segment_start"].to_numpy(np.int64)
            else:  # formats 1 and 2: the version's own arrays, episodes back to back
                segments, starts = [""] * len(table), episode_starts(ends_of(n))
            roots = {s: self.root_of(s) for s in set(segments)}
            self._spans[name] = [ArraySpan(roots[seg], name, int(a), int(a + k))
                                 for seg, a, k in zip(segments, starts, n, strict=True)]
        every = self._spans[name]
        return list(every) if episodes is None else [every[e] for e in episodes]

    def camera_spans(self, name: str, episodes: Iterable[int] | None = None) -> list[ArraySpan]:
        return self.spans(array_path(self._camera_feature(name).name), episodes)

    def check_arrays(self) -> None:
        """Every feature has its array in every segment the version reads (one listing per segment: `info` runs
        it; readers find a missing array when they read it)."""
        for segment in self.manifest.segments:
            there = set(self.root_of(segment).children(DATA))
            missing = [f for f in self.manifest.features if f.name not in there]
            if missing:
                raise missing_arrays(self.root_of(segment), missing)

    def segment(self, segment: str) -> SegmentRecord:
        """A segment's record, read (and checked against the manifest's sha256 of it) once."""
        if segment not in self._segments:
            self._segments[segment] = read_segment(self.location, segment, self.manifest.segments.get(segment))
        return self._segments[segment]

    def segment_episode(self, segment: str, content_hash: str) -> SegmentEpisode:
        """What segment ``segment`` records of the episode with ``content_hash`` (its image sums, its place)."""
        if segment not in self._segment_episodes:
            self._segment_episodes[segment] = {e.content_hash: e for e in self.segment(segment).episodes}
        return self._segment_episodes[segment][content_hash]

    def checksums(self) -> dict[str, dict[str, str]]:
        """The sha256 of every object the version's episodes are read from, by root (``ShardVerifier``)."""
        if not self.manifest.segments:
            return {str(self.objects): dict(self.manifest.checksums)}
        return {str(self.root_of(s)): self.segment(s).checksums for s in self.manifest.segments}

    @property
    def reader(self) -> SpanReader:
        if self._reader is None:
            self._reader = SpanReader(ShardVerifier(self.checksums(), str(self.location)))
        return self._reader

    def camera(self, name: str) -> JoinedArray:
        """One camera's (N, S, S, 3) uint8 RGB frames, in the version's frame order."""
        f = self._camera_feature(name)
        return JoinedArray(self.camera_spans(name), self.reader, tuple(f.shape), f.dtype)

    @property
    def action(self) -> np.ndarray:
        """Every action row, (N, A) float32 in physical units, in the version's frame order (read once)."""
        if self._action is None:
            f = self.manifest.action_feature
            spans = self.spans(array_path(f.name))
            whole: dict[str, np.ndarray] = {}
            for span in spans:  # one read per segment: its action array is small
                key = str(span.root)
                if key not in whole:
                    array = self.reader.array(span)
                    whole[key] = self.reader.read(ArraySpan(span.root, span.name, 0, array.shape[0]), "(actions)")
            rows = [whole[str(s.root)][s.start : s.stop] for s in spans]
            self._action = (np.concatenate(rows).astype(np.float32) if rows
                            else np.zeros((0, *f.shape), np.float32))
        return self._action

    @property
    def episode_ends(self) -> np.ndarray:
        if self._ends is None:
            self._ends = ends_of(self.episodes["n_frames"].to_numpy(np.int64))
            self._ends.setflags(write=False)  # shared by every caller
        return self._ends

    def episode_range(self, episode: int) -> tuple[int, int]:
        return episode_range(self.episode_ends, episode)

    def records(self) -> list[EpisodeRecord]:
        return [EpisodeRecord.model_validate(row) for row in self.episodes.to_dict("records")]

    def build_log(self) -> BuildLog:
        """What each build of this store added, kept, replaced and left out."""
        return BuildLog.model_validate_json(self.objects.read(BUILD_LOG) or b'{"runs": []}')

    def split_actions(self, split: str) -> np.ndarray:
        """Every action row of one split's episodes, (N, A) float32 in physical units."""
        action = self.action
        chosen = self.episodes.loc[self.episodes["split"] == split, "episode"]
        rows = [np.arange(a, b) for a, b in episode_ranges(self.episode_ends, chosen)]
        return action[np.concatenate(rows)] if rows else np.zeros((0, action.shape[1]), np.float32)


def missing_arrays(root: StoreLocation, missing: list[Feature]) -> StoreError:
    listed = ", ".join(f"{f.name} ({f.kind.value}, {array_path(f.name)})" for f in missing)
    return StoreError(f"{root}: the manifest lists feature(s) the store has no array for: {listed}; the store is "
                      "damaged or was changed by hand: rebuild it from its sources", Fix({"overwrite": True}, "to build-splits"))


def read_segment(store: StoreLocation, segment: str, digest: str | None) -> SegmentRecord:
    """A segment's ``segment.json``, checked against ``digest`` (its sha256 as a version's manifest recorded it)."""
    where = f"{store}/{segment_prefix(segment)}/{SEGMENT}"
    raw = store.child(segment_prefix(segment)).read(SEGMENT)
    if raw is None:
        raise StoreError(f"{where}: missing; the version's frames are gone (deleted by hand?)",
                         Fix({"verify": True}, "to name what else is damaged", command=f"info {store}"))
    if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
        raise StoreError(f"{where}: checksum mismatch: the segment's record is not what was written",
                         Fix({"verify": True}, "to name what else is damaged", command=f"info {store}"))
    try:
        return SegmentRecord.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        raise StoreError(f"{where}: unreadable ({exc})") from exc


def open_store(where: str | Path | StoreLocation) -> DatasetStore:
    """Open a complete store (a local folder or a URL) at its current version, or at the version or tag
    ``STORE@REF`` names (``history.parse_address``); or raise ``StoreError`` saying what is wrong."""
    try:
        address = StoreAddress(str(where)) if isinstance(where, StoreLocation) else parse_address(where)
        location = where if isinstance(where, StoreLocation) else StoreLocation.of(address.location)
        with storage_errors(location, "opening the store"):
            return _open(location, address.ref)
    except LocationError as exc:
        raise StoreError(str(exc)) from exc
    except VersionError as exc:
        raise StoreError(exc.message, *exc.fixes) from exc


def pin(store: DatasetStore) -> DataPin:
    """Exactly the data ``store`` holds: its absolute location, the version opened, the manifest's sha256."""
    where = str(store.location.path.resolve()) if store.location.path is not None else str(store.location)
    raw = store.objects.read(MANIFEST) or b""
    return DataPin(store=where, version=store.version, manifest_sha256=hashlib.sha256(raw).hexdigest())


def _pointer(store: StoreLocation) -> StorePointer | None:
    try:
        return read_pointer(store)
    except PointerError as exc:
        raise StoreError(f"{exc}; the pointer was changed by hand or damaged: rebuild the store",
                         Fix({"overwrite": True}, "to build it again")) from exc


def _open(store: StoreLocation, ref: str | None = None) -> DatasetStore:
    if store.path is not None:
        _check_local(store.path)
    pointer = _pointer(store)
    if ref is not None:
        if pointer is None:
            raise StoreError(f"{store}: no versions to choose from (not a vla-data store, or one built before "
                             "versions): open it without @")
        version = resolve(store, ref, read_history(store, pointer))
        pointer = pointer.model_copy(update={"version": version})
    location = objects_of(store, pointer)
    raw_manifest = location.read(MANIFEST)
    if raw_manifest is None and pointer is not None and (now := _pointer(store)) != pointer:
        # a build committed a new version and removed the one just named, between the two reads: open the new one
        pointer, location = now, objects_of(store, now)
        raw_manifest = location.read(MANIFEST)
    if raw_manifest is None and pointer is not None:
        raise StoreError(f"{store}: its current version {pointer.version} has no {MANIFEST} (deleted by hand?)",
                         Fix({"verify": True}, "to name what else is damaged", command=f"info {store}"),
                         Fix({"overwrite": True}, "to build it again"))
    if raw_manifest is None:
        if (writer := active_writer(store)) is not None:
            raise StoreError(f"{store}: being built by {writer.describe()}; open it once that build has finished")
        if store.read(MARKER) is not None:
            raise StoreError(
                f"{store}: incomplete store (vla-data's, but no build has finished there yet)",
                Fix({"overwrite": True}, "to build it again"))
        raise StoreError(f"{store}: no vla-data store there (no current.json or {MANIFEST}); a store is what "
                         "`vla-data build-splits SRC -o OUT.zarr` writes")
    try:
        raw = json.loads(raw_manifest)
        version = raw.get("format_version") if isinstance(raw, dict) else None
        if version not in READABLE_FORMATS:  # before reading the rest: another format has other fields
            raise StoreError(
                f"{location}: store format {version}, this vla-data {__version__} reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}; use the vla-data that built it, or rebuild the store "
                "from its sources with this one"
            )
        manifest = StoreManifest.model_validate(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{location}/{MANIFEST}: unreadable manifest ({exc}); rebuild the store") from exc
    try:
        table = location.read(EPISODES)
        if table is None:
            raise OSError(f"no {EPISODES}")
        recorded = manifest.checksums.get(EPISODES)
        if recorded is not None and hashlib.sha256(table).hexdigest() != recorded:
            raise StoreError(f"{location}/{EPISODES}: checksum mismatch: the episode table was changed since it was "
                             "written (by hand?); restore it, or open an undamaged version (`vla-data log` lists "
                             "them); `vla-data relabel`, `remove` and `resplit` change episodes as new versions",
                             Fix({"verify": True}, "to name every damaged object", command=f"info {store}"))
        episodes = pd.read_csv(io.BytesIO(table), keep_default_na=False)
        if not manifest.segments:  # formats 1 and 2: the version holds its arrays
            group = zarr.open_group(store=location.zarr_store(), mode="r", zarr_format=3)
            missing = [f for f in manifest.features if array_path(f.name) not in group]
            if missing:
                raise missing_arrays(location, missing)
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"{location}: damaged store ({exc})",
                         Fix({"verify": True}, "to name every damaged object", command=f"info {store}")) from exc
    return DatasetStore(location=store, objects=location, manifest=manifest, episodes=episodes,
                        version=pointer.version if pointer is not None else None)


def _check_local(path: Path) -> None:
    """A local store folder that is not there, or not vla-data's, is refused saying which."""
    if not path.exists():
        raise StoreError(f"{path}: no such store; build one with `vla-data build-splits SRC -o {path}`")
    if not path.is_dir() or not any((path / key).is_file() for key in (MANIFEST, POINTER)):
        if path.is_dir() and (path / MARKER).is_file():
            return  # incomplete: said by _open
        raise StoreError(f"{path}: not a vla-data store ({listing(path)}); a store is what "
                         "`vla-data build-splits SRC -o OUT.zarr` writes")


def stored_checksums(location: StoreLocation, skip: str = MANIFEST) -> dict[str, str]:
    """sha256 of every object under ``location`` but ``skip`` (its record, written last), by key."""
    return {key: hashlib.sha256(location.read(key) or b"").hexdigest() for key in location.keys() if key != skip}


def stored_bytes(store: DatasetStore) -> int:
    """The bytes every object the version reads takes (its own and its segments')."""
    roots = [store.objects, *(store.root_of(s) for s in store.manifest.segments)]
    return sum(root.size(key) for root in roots for key in root.keys())


def verify(store: DatasetStore) -> list[str]:
    """Recompute every checksum of the version and of each segment it references; name each damaged or missing
    object, with the frames and episodes it holds."""
    problems = _compare(store.objects, stored_checksums(store.objects), store.manifest.checksums, "", store)
    for segment, digest in store.manifest.segments.items():
        try:
            record = read_segment(store.location, segment, digest)
        except StoreError as exc:
            problems.append(str(exc).split(";")[0])
            continue
        root = store.root_of(segment)
        problems += _compare(root, stored_checksums(root, SEGMENT), record.checksums, f"{segment_prefix(segment)}/",
                             store, record)
    return problems


def _compare(root: StoreLocation, found: dict[str, str], recorded: dict[str, str], prefix: str, store: DatasetStore,
             segment: SegmentRecord | None = None) -> list[str]:
    problems = []
    for name, digest in recorded.items():
        if found.get(name) == digest:
            continue
        what = "missing" if name not in found else "checksum mismatch"
        problems.append(f"{prefix}{name}: {what}{_frames_of(name, store, segment)}")
    return problems + [f"{prefix}{name}: not in the manifest" for name in found.keys() - recorded.keys()]


def _frames_of(name: str, store: DatasetStore, segment: SegmentRecord | None) -> str:
    """For a shard of a camera array (or an object of another array), the frames and episodes it holds."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != "data" or parts[2] != "c":
        return ""
    feature = next((f for f in store.manifest.features if f.name == parts[1]), None)
    if feature is None or feature.kind != FeatureKind.camera:
        return f" (array data/{parts[1]})"
    first = int(parts[3]) * FRAMES_PER_SHARD
    if segment is None:
        ends = store.episode_ends
        last = min(first + FRAMES_PER_SHARD, int(ends[-1]) if len(ends) else first) - 1
        e0, e1 = episode_of(ends, first), episode_of(ends, last)
        return f" (array data/{parts[1]}, frames {first}..{last}, episodes {e0}..{e1})"
    last = min(first + FRAMES_PER_SHARD, segment.n_frames) - 1
    hashes = {e.content_hash for e in segment.episodes if e.start <= last and e.start + e.n_frames > first}
    held = [str(i) for i, h in enumerate(store.episodes["content_hash"]) if h in hashes]
    return (f" (array data/{parts[1]}, segment frames {first}..{last}, episodes "
            f"{', '.join(held) or 'none of this version'})")
