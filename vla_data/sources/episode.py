"""What every source format gives: its episodes, each with its actions, a lazy frame reader per camera, its
content hash and (where the source has a clock) its frame stamps.

A format (``SourceFormat``: ``vla_data.sources.hdf5.HDF5``, ``vla_data.sources.bag_episodes.BAGS``) says which
paths are its sources and reads a source into its episodes. Everything after (validation's shared rules, the
build planner, the shard writers, predict, drive, view) works on ``SourceEpisode`` and never asks which format
it came from. Readers are small and picklable: a shard task on another process or Dask worker reads its frames
itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from schemas import ColorOrder, Finding, RecorderSettings, SourceKind
from vla_data.common.resize import to_rgb


class SourceError(ValueError):
    """A source that cannot give the episode asked for (damaged, changed since it was validated, or naming no
    episode it has); the message names the source and why."""

    @classmethod
    def of(cls, source: Path, finding: Finding) -> SourceError:
        """The error of a source whose reading stopped at ``finding``."""
        return cls(f"{source}: {finding.code.value}: {finding.message}")


@dataclass(frozen=True)
class Frames:
    """Consecutive frames of one camera: (n, H, W, 3) uint8 in ``color_order``."""

    pixels: np.ndarray
    color_order: ColorOrder

    def rgb(self) -> np.ndarray:
        return to_rgb(self.pixels, self.color_order)


class FrameReader(Protocol):
    """One camera's frames of one episode, read when asked (picklable: shard tasks carry it)."""

    def read(self, start: int, stop: int) -> Frames: ...


@dataclass(frozen=True)
class SourceEpisode:
    """One episode of a source, as every stage after reading sees it."""

    ref: str  # its name: the file or bag path, or BAG#k for the k-th episode of a cut bag
    kind: SourceKind
    actions: np.ndarray  # (T, A) float32: every recorded channel, physical units
    cameras: dict[str, FrameReader]  # camera name (the settings' cameras) -> its frames
    content_hash: str | None  # frames + actions (``content_hash.fingerprint``); None unless asked to identify
    stamps: np.ndarray | None = None  # (T,) int64 ns: each frame's stamp, where the source has a clock

    @property
    def n_frames(self) -> int:
        return len(self.actions)

    def frames(self) -> dict[str, Frames]:
        """Every camera's frames, whole (replay: predict, drive, view)."""
        return {name: reader.read(0, self.n_frames) for name, reader in self.cameras.items()}


class SourceFormat(Protocol):
    """One kind of source: which paths it claims, and how a source of it is read."""

    kind: SourceKind

    def claims(self, path: Path) -> bool:
        """``path`` (a file or a folder) is one source of this format."""
        ...

    def source_of(self, ref: str) -> Path | None:
        """The source that holds the episode ``ref`` names (a file, a bag for BAG#k), or None: not this format's."""
        ...

    def read(self, source: Path, settings: RecorderSettings, identify: bool) -> list[SourceEpisode]:
        """Every episode of ``source``; ``identify``: compute each one's content hash (reads every stored frame
        byte). Raises ``SourceError`` when the source gives none."""
        ...
