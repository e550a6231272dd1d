"""A store's history: every committed version's record (who made it, when, with what command, what changed),
its tags, and the retention rule ``vla-data gc`` applies. Each version carries the whole history up to itself
(``history.json``), so the log still shows a version after ``gc`` dropped its data."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.store import VERSION_ID, NormStats

TAG_NAME = r"^[A-Za-z][A-Za-z0-9._-]{0,63}$"  # and not shaped like a version id (``is_tag_name``)


class Provenance(BaseModel):
    """A store and the version of it that a merged store took its episodes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str
    version: str | None = Field(None, pattern=VERSION_ID, description="None: a store from before versions.")


class VersionChange(BaseModel):
    """What a version changed against its parent: episodes by source path (or episode id for edits)."""

    model_config = ConfigDict(extra="forbid")

    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    relabelled: list[str] = Field(default_factory=list)
    moved: list[str] = Field(default_factory=list, description="Episodes whose split changed.")
    episodes: int = Field(0, description="Episodes the version holds.")
    frames: int = Field(0, description="Frames the version holds.")
    merged_from: list[Provenance] = Field(default_factory=list, description="A merge: the stores and versions.")

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("added", self.added), ("removed", self.removed),
                                                ("relabelled", self.relabelled), ("moved", self.moved)) if v]
        merged = (f" (merged from {', '.join(f'{p.store}@{p.version}' if p.version else p.store for p in self.merged_from)})"
                  if self.merged_from else "")
        return f"{', '.join(parts) or 'no episode changed'}; {self.episodes} episodes, {self.frames} frames{merged}"


class VersionRecord(BaseModel):
    """One committed version: its id, its parent (None: the store's first), when, by whom, and what changed."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_ID)
    parent: str | None = Field(None, pattern=VERSION_ID)
    created: str = Field(description="ISO 8601, UTC.")
    command: str = Field(description="The command line that made it.")
    host: str
    user: str
    tool_version: str
    change: VersionChange


class History(BaseModel):
    """``history.json`` of a version: the records of every version from the store's first to this one."""

    model_config = ConfigDict(extra="forbid")

    versions: list[VersionRecord] = Field(default_factory=list)

    def ids(self) -> list[str]:
        return [r.version for r in self.versions]


class TagRecord(BaseModel):
    """``tags/<name>.json``: a name for one version, written once (create-only); deleting it is explicit."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TAG_NAME)
    version: str = Field(pattern=VERSION_ID)
    created: str
    user: str


class DataPin(BaseModel):
    """The exact data a result came from: the store (an absolute path or a URL), the version read, and the sha256
    of that version's manifest (which holds every other object's sha256)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str
    version: str | None = Field(None, pattern=VERSION_ID, description="None: a store from before versions.")
    manifest_sha256: str

    @property
    def address(self) -> str:
        """How a reader opens exactly this data: ``STORE@VERSION`` (``STORE@`` when the path holds an @)."""
        if self.version is not None:
            return f"{self.store}@{self.version}"
        return f"{self.store}@" if "@" in self.store else self.store


class Retention(BaseModel):
    """Which committed versions ``vla-data gc`` keeps: the current one, every tagged one, the newest ``keep_last``
    others and, with ``keep_days``, every one younger than that. The rest have their data removed (their
    records stay in the history)."""

    model_config = ConfigDict(extra="forbid")

    keep_last: int = Field(10, ge=0, description="Untagged versions kept besides the current one, newest first.")
    keep_days: float | None = Field(None, ge=0, description="Also keep every version younger than this many days.")

    def kept(self, history: History, tagged: set[str], now: datetime) -> set[str]:
        """The versions of ``history`` (oldest first, the last current) this rule keeps."""
        records = history.versions
        keep = {r.version for r in records[-1 - self.keep_last:]} | (tagged & set(history.ids()))
        if self.keep_days is not None:
            keep |= {r.version for r in records
                     if (now - datetime.fromisoformat(r.created)).total_seconds() <= self.keep_days * 86400}
        return keep


def is_version_id(text: str) -> bool:
    return re.fullmatch(VERSION_ID, text) is not None


def is_tag_name(text: str) -> bool:
    """A name a tag may have: never one that reads as a version id (a tag would shadow that version)."""
    return re.fullmatch(TAG_NAME, text) is not None and not is_version_id(text)



class VersionDiff(BaseModel):
    """`vla-data diff STORE A B`: what B changed against A (episodes by source), and the train stats of each."""

    model_config = ConfigDict(extra="forbid")

    store: str
    a: str | None
    b: str | None
    change: VersionChange
    stats_a: NormStats
    stats_b: NormStats
