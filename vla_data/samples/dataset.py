"""``WindowDataset``: every frame of every episode of a split as the anchor of one windowed, chunked sample.

The sample contract is ``schemas.sample`` (field names ``SampleField``, geometry ``WindowSpec``); the index
math is ``vla_data.samples.windows``; decoded frames come from ``vla_data.samples.frames`` (all in memory within a budget,
else an LRU of whole episodes, so one sample never decodes a frame twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from schemas.sample import Augment, MirrorRule, SampleField, WindowSpec
from schemas.store import Split, StoreManifest
from vla_data.common.ranges import episode_ranges
from vla_data.samples.augment import mirror_frames, mirror_sign, mirror_words, side_words
from vla_data.samples.frames import EpisodeFrames, default_memory_budget
from vla_data.samples.normalize import Normalizer
from vla_data.samples.segments import segment_index
from vla_data.store.reader import DatasetStore, open_store
from vla_data.samples.windows import anchors, window_index


class Sample(TypedDict):
    """One sample; the keys are exactly ``SampleField``'s values."""

    rgb: dict[str, torch.Tensor]  # camera name -> (W, 3, S, S) uint8, in the store's camera order
    frame_mask: torch.Tensor  # (W,) bool
    actions: torch.Tensor  # (W, K, A) float32, normalised unless normalize=False
    chunk_mask: torch.Tensor  # (W, K) bool
    instruction: str
    episode: int  # the store's episode id
    t: int  # the anchor frame, episode-relative


class Segment(TypedDict):
    """L consecutive anchors of one episode (``WindowDataset.segment``): each frame once, and the table that
    makes every anchor's window of them. The masks and actions are the L samples' own, stacked."""

    rgb: dict[str, torch.Tensor]  # camera name -> (F, 3, S, S) uint8, the unique frames in episode order
    window_frames: torch.Tensor  # (L, W) long: the row of ``rgb`` of each window frame
    frame_mask: torch.Tensor  # (L, W) bool
    actions: torch.Tensor  # (L, W, K, A) float32
    chunk_mask: torch.Tensor  # (L, W, K) bool
    instruction: str  # one for the whole segment: one episode, mirrored or not
    episode: int
    t: torch.Tensor  # (L,) the anchor frames


class WindowDataset(Dataset[Sample]):
    """Windowed, chunked samples of one split of a store (see ``schemas.sample`` for the contract).

    ``augment="mirror"`` appends a mirrored copy of every anchor whose episode's instruction names a side
    (``mirror.pairs``): samples ``n..`` are those anchors in order, seen in a mirror (frames flipped
    left-right, the recorder channels ``mirror.negate_channels`` negated in physical units, side words swapped;
    ``ValueError`` at once where that rule cannot tell which channels change sign). An episode whose
    instruction names no side is not mirrored (``unmirrored_episodes``), so the dataset has ``n`` plus the
    anchors of the mirrored episodes. Deterministic, so every worker count and every resume gives the same samples.
    ``memory_budget`` (bytes; default a quarter of the RAM available) decides whether the split's decoded
    frames are held in memory; otherwise ``cache_episodes`` whole episodes are kept (LRU).
    """

    def __init__(
        self,
        store: Path | str | DatasetStore,  # a local folder, a URL, or an opened store
        split: Split | str = Split.train,
        spec: WindowSpec = WindowSpec(),
        normalize: bool = True,
        augment: Augment | str = Augment.none,
        mirror: MirrorRule | None = None,
        memory_budget: int | None = None,
        cache_episodes: int = 32,
    ) -> None:
        opened = store if isinstance(store, DatasetStore) else open_store(store)
        self.location = opened.location
        self.manifest: StoreManifest = opened.manifest
        self.split = Split(split)
        self.spec = spec
        self.normalize = normalize
        self.augment = Augment(augment)
        self.mirror = mirror or MirrorRule()
        self.normalizer = Normalizer(self.manifest.stats)
        self.action_names = list(self.manifest.actions.names)
        self.mirror_sign = (mirror_sign(self.manifest.actions, self.mirror) if self.augment == Augment.mirror
                            else np.ones(len(self.action_names), np.float32))  # checked here, before any sample

        table = opened.episodes
        rows = table[table["split"] == self.split.value]
        if rows.empty:
            raise ValueError(
                f"{self.location}: split {self.split.value!r} has no episodes "
                f"({', '.join(f'{s.value} {n}' for s, n in self.manifest.split_episodes.items())})"
            )
        ends = opened.episode_ends
        self.episode_ids = rows["episode"].to_numpy(np.int64)
        self.n_frames = rows["n_frames"].to_numpy(np.int64)
        self.instructions = rows["instruction"].astype(str).tolist()
        ranges = episode_ranges(ends, self.episode_ids)
        all_actions = opened.action
        self.actions = [all_actions[a:b] for a, b in ranges]  # physical units
        self.which, self.t = anchors(self.n_frames, spec.stride)
        mirrored = np.array([self.augment == Augment.mirror and bool(side_words(s, self.mirror))
                             for s in self.instructions], bool)
        self.mirrored_anchors = np.flatnonzero(mirrored[self.which])  # sample n + j mirrors anchor mirrored_anchors[j]
        self.unmirrored_episodes: list[int] = (
            self.episode_ids[~mirrored].tolist() if self.augment == Augment.mirror else []
        )  # store ids of the episodes augment=mirror leaves out: their instruction names no side

        s = self.manifest.preprocessing.image_size
        self.cameras = self.manifest.camera_names
        self.frame_bytes = int(self.n_frames.sum()) * s * s * 3 * len(self.cameras)
        budget = default_memory_budget() if memory_budget is None else memory_budget
        self.camera_frames = {c: EpisodeFrames(opened.camera_spans(c, self.episode_ids.tolist()), opened.reader,
                                               self.frame_bytes <= budget, cache_episodes,
                                               self.episode_ids.tolist()) for c in self.cameras}

    @property
    def frames(self) -> EpisodeFrames:
        """The first camera's frames (each camera's cache holds the same episodes; the loader asks one)."""
        return self.camera_frames[self.cameras[0]]

    def load_all(self, progress: bool = False) -> None:
        """Decode every camera's frames of the split into memory (the in-memory path); ``progress``: with a bar
        per camera (on a terminal)."""
        for camera, frames in self.camera_frames.items():
            frames.load_all(f"reading {self.split.value} {camera}" if progress else None)

    @property
    def n_anchors(self) -> int:
        return len(self.t)

    def __len__(self) -> int:
        return self.n_anchors + len(self.mirrored_anchors)

    def anchor(self, index: int) -> int:
        """The anchor (position in ``which``/``t``) that sample ``index`` (0..len-1) reads, mirrored or not."""
        return index if index < self.n_anchors else int(self.mirrored_anchors[index - self.n_anchors])

    def sample_episode(self, index: int) -> int:
        """Position (in this split) of the episode that sample ``index`` reads; the sampler groups by it."""
        return int(self.which[self.anchor(index)])

    def is_mirrored(self, index: int) -> bool:
        return index >= self.n_anchors

    def segment_groups(self) -> list[np.ndarray]:
        """The sample indices of each episode, and of each mirrored episode, in anchor order: a segment is a run
        of one of them (consecutive anchors, all mirrored or none)."""
        groups = []
        for first, which in ((0, self.which), (self.n_anchors, self.which[self.mirrored_anchors])):
            cuts = np.flatnonzero(np.diff(which)) + 1
            groups += [g for g in np.split(first + np.arange(len(which)), cuts) if len(g)]
        return groups

    def _frames(self, e: int, rows: np.ndarray, mirrored: bool) -> dict[str, np.ndarray]:
        """Each camera's frames ``rows`` of episode ``e`` as (N, S, S, 3), in the mirrored world if asked."""
        frames = {c: f.episode(e)[rows] for c, f in self.camera_frames.items()}
        return {c: mirror_frames(f) for c, f in frames.items()} if mirrored else frames  # every camera mirrored

    def _actions(self, e: int, rows: np.ndarray, past_end: np.ndarray, mirrored: bool) -> torch.Tensor:
        """The action rows ``rows`` (..., K) of episode ``e``, zero velocity where ``past_end``, mirrored and
        normalised as the dataset says -> (..., K, A) float32."""
        actions = np.where(past_end[..., None], np.float32(0), self.actions[e][rows])  # physical units
        if mirrored:
            actions = actions * self.mirror_sign
        if self.normalize:
            actions = self.normalizer.normalize(actions)
        return torch.from_numpy(np.ascontiguousarray(actions, np.float32))

    def _instruction(self, e: int, mirrored: bool) -> str:
        return mirror_words(self.instructions[e], self.mirror) if mirrored else self.instructions[e]

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        index %= len(self)
        anchor, mirrored = self.anchor(index), self.is_mirrored(index)
        e, t = int(self.which[anchor]), int(self.t[anchor])
        ix = window_index(t, int(self.n_frames[e]), self.spec)
        return Sample(
            # a (W, 3, S, S) view of the gathered frames: the batch's stack makes the one contiguous copy
            rgb={c: torch.from_numpy(f).permute(0, 3, 1, 2) for c, f in self._frames(e, ix.frames, mirrored).items()},
            frame_mask=torch.from_numpy(ix.frame_mask),
            actions=self._actions(e, ix.rows, ix.past_end, mirrored),
            chunk_mask=torch.from_numpy(ix.chunk_mask),
            instruction=self._instruction(e, mirrored),
            episode=int(self.episode_ids[e]),
            t=t,
        )

    def segment(self, indices: tuple[int, ...] | list[int]) -> Segment:
        """Samples ``indices`` (a run of one of ``segment_groups``) as one segment: exactly those samples, each
        frame once. Indices of different episodes, or mirrored with unmirrored, are refused."""
        if not len(indices):
            raise IndexError("an empty segment")
        index = np.asarray(indices, np.int64) % len(self)
        anchor = np.array([self.anchor(int(i)) for i in index], np.int64)
        mirrored = index >= self.n_anchors
        e = int(self.which[anchor[0]])
        if (self.which[anchor] != e).any() or mirrored.any() != mirrored.all():
            raise IndexError(f"samples {list(indices)[:8]}: a segment is samples of one episode, all mirrored or none")
        t = self.t[anchor]
        ix = segment_index(t, int(self.n_frames[e]), self.spec)
        frames = self._frames(e, ix.frames, bool(mirrored[0]))
        return Segment(
            rgb={c: torch.from_numpy(f).permute(0, 3, 1, 2) for c, f in frames.items()},
            window_frames=torch.from_numpy(ix.windows),
            frame_mask=torch.from_numpy(np.stack([a.frame_mask for a in ix.anchors])),
            actions=self._actions(e, np.stack([a.rows for a in ix.anchors]), np.stack([a.past_end for a in ix.anchors]),
                                  bool(mirrored[0])),
            chunk_mask=torch.from_numpy(np.stack([a.chunk_mask for a in ix.anchors])),
            instruction=self._instruction(e, bool(mirrored[0])),
            episode=int(self.episode_ids[e]),
            t=torch.from_numpy(t),
        )

    def denormalize(self, actions: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalised (..., A) actions back to physical units with the store's train stats."""
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        return self.normalizer.denormalize(actions)


assert set(Sample.__annotations__) == {f.value for f in SampleField}, "Sample and SampleField disagree"
