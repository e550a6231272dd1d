"""``WindowDataset``: every frame of every episode of a split as the anchor of one windowed, chunked sample.

The sample contract is ``schemas.sample`` (field names ``SampleField``, geometry ``WindowSpec``); the index
math is ``vla_data.windows``; decoded frames come from ``vla_data.frames`` (all in memory within a budget,
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
from vla_data.augment import mirror_frames, mirror_sign, mirror_words, side_words
from vla_data.frames import EpisodeFrames, default_memory_budget
from vla_data.normalize import Normalizer
from vla_data.store import DatasetStore, open_store
from vla_data.windows import anchors, window_index


class Sample(TypedDict):
    """One sample; the keys are exactly ``SampleField``'s values."""

    rgb: dict[str, torch.Tensor]  # camera name -> (W, 3, S, S) uint8, in the store's camera order
    frame_mask: torch.Tensor  # (W,) bool
    actions: torch.Tensor  # (W, K, A) float32, normalised unless normalize=False
    chunk_mask: torch.Tensor  # (W, K) bool
    instruction: str
    episode: int  # the store's episode id
    t: int  # the anchor frame, episode-relative


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
        stops = ends[self.episode_ids]
        ranges = [(int(b - n), int(b)) for b, n in zip(stops, self.n_frames, strict=True)]
        all_actions = np.asarray(opened.action[:], np.float32)
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
        self.camera_frames = {c: EpisodeFrames(opened.camera_location(c), ranges, self.frame_bytes <= budget, cache_episodes,
                                               self.episode_ids.tolist()) for c in self.cameras}

    @property
    def frames(self) -> EpisodeFrames:
        """The first camera's frames (each camera's cache holds the same episodes; the loader asks one)."""
        return self.camera_frames[self.cameras[0]]

    def load_all(self) -> None:
        """Decode every camera's frames of the split into memory (the in-memory path)."""
        for frames in self.camera_frames.values():
            frames.load_all()

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

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        index %= len(self)
        anchor = self.anchor(index)
        e, t = int(self.which[anchor]), int(self.t[anchor])
        ix = window_index(t, int(self.n_frames[e]), self.spec)
        frames = {c: f.episode(e)[ix.frames] for c, f in self.camera_frames.items()}  # each (W, S, S, 3)
        actions = np.where(ix.past_end[..., None], np.float32(0), self.actions[e][ix.rows])  # (W, K, A) physical
        instruction = self.instructions[e]
        if self.is_mirrored(index):
            frames = {c: mirror_frames(f) for c, f in frames.items()}  # the mirrored world, seen by every camera
            actions = actions * self.mirror_sign
            instruction = mirror_words(instruction, self.mirror)
        if self.normalize:
            actions = self.normalizer.normalize(actions)
        return Sample(
            # a (W, 3, S, S) view of the gathered frames: the batch's stack makes the one contiguous copy
            rgb={c: torch.from_numpy(f).permute(0, 3, 1, 2) for c, f in frames.items()},
            frame_mask=torch.from_numpy(ix.frame_mask),
            actions=torch.from_numpy(np.ascontiguousarray(actions, np.float32)),
            chunk_mask=torch.from_numpy(ix.chunk_mask),
            instruction=instruction,
            episode=int(self.episode_ids[e]),
            t=t,
        )

    def denormalize(self, actions: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalised (..., A) actions back to physical units with the store's train stats."""
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        return self.normalizer.denormalize(actions)


assert set(Sample.__annotations__) == {f.value for f in SampleField}, "Sample and SampleField disagree"
