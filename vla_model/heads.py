"""The action head's readout and loss: regression (Huber on the normalised values) or discrete levels.

A discrete head gives, per action channel and chunk step, logits over that channel's levels: the values the
train split holds where a channel takes few of them (a teleop recorder's -1.15 / 0 / +1.15), else quantile bins
of the train split (``ModelConfig.bins``). The loss is the cross-entropy of the level nearest the target, on the
unmasked entries (the same masks as the Huber loss); the readout turns the logits into a value per entry: the
expected value over the levels (default) or the most likely level (``ModelConfig.readout``). Everything
downstream of ``VLAPolicy.act`` (the runner, eval, serve, the ONNX export) sees normalised values either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from schemas.train import Readout
from vla_data.samples.normalize import Normalizer
from vla_model.loss import masked_huber

LEVEL_DECIMALS = 6  # values equal to this many decimals are one level


def action_levels(actions: np.ndarray, bins: int, mirrored: Sequence[int] = ()) -> list[list[float]]:
    """Per channel of (N, A) physical train actions, its levels: the distinct values when there are at most
    ``bins`` of them, else the centres of ``bins`` quantile bins; a channel the mirror augmentation negates
    (``mirrored``) gets each level's negation too, so a mirrored target has its level."""
    levels = []
    for channel in range(actions.shape[1]):
        values = np.unique(np.round(actions[:, channel].astype(np.float64), LEVEL_DECIMALS))
        if len(values) > bins:
            values = np.unique(np.round(np.quantile(actions[:, channel], (np.arange(bins) + 0.5) / bins),
                                        LEVEL_DECIMALS))
        if channel in mirrored:
            values = np.unique(np.concatenate([values, -values]))
        levels.append([float(v) + 0.0 for v in values])  # + 0.0: -0.0 is 0.0
    return levels


class Levels(torch.nn.Module):
    """A discrete head's levels: ``physical`` per channel (what a checkpoint records), and normalised as the
    model reads them, padded to the longest: ``values`` (A, L) and ``valid`` (A, L)."""

    def __init__(self, physical: list[list[float]], normalizer: Normalizer, readout: Readout) -> None:
        super().__init__()
        if len(physical) != len(normalizer.offset) or not all(physical):
            raise ValueError(f"levels for {len(physical)} channels, some empty, for {len(normalizer.offset)} action channels")
        self.physical = [list(map(float, channel)) for channel in physical]
        width = max(len(v) for v in physical)
        values = torch.zeros(len(physical), width)
        valid = torch.zeros(len(physical), width, dtype=torch.bool)
        for a, channel in enumerate(physical):
            normalised = (np.asarray(channel, np.float64) - normalizer.offset[a]) / normalizer.scale[a]
            values[a, : len(channel)] = torch.from_numpy(normalised.astype(np.float32))
            valid[a, : len(channel)] = True
        self.register_buffer("values", values, persistent=False)  # the checkpoint's meta records them
        self.register_buffer("valid", valid, persistent=False)
        self.readout_mode = readout

    @property
    def count(self) -> int:
        return self.values.shape[1]

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., A * L) -> (..., A, L), the padding levels of a channel with fewer never chosen."""
        logits = raw.view(*raw.shape[:-1], *self.values.shape)
        return logits.masked_fill(~self.valid, torch.finfo(logits.dtype).min)

    def readout(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., A, L) logits -> (..., A) normalised values."""
        if self.readout_mode == Readout.most_likely:
            index = logits.argmax(-1, keepdim=True)
            return torch.gather(self.values.expand(*logits.shape), -1, index).squeeze(-1)
        return (logits.softmax(-1) * self.values).sum(-1)

    def nearest(self, target: torch.Tensor) -> torch.Tensor:
        """(..., A) normalised values -> (..., A) the index of each one's nearest level."""
        distance = (target.unsqueeze(-1) - self.values).abs().masked_fill(~self.valid, float("inf"))
        return distance.argmin(-1)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the nearest level over the entries where ``mask`` (B, W, K) is True, every channel
        counted; 0 (with a graph) for a batch with no unmasked entry."""
        per_entry = F.cross_entropy(logits.float().flatten(0, -2), self.nearest(target.float()).flatten(),
                                    reduction="none").view(target.shape)
        weights = mask.unsqueeze(-1).to(per_entry.dtype)
        return (per_entry * weights).sum() / (weights.sum() * target.shape[-1]).clamp(min=1)


def head_loss(levels: Levels | None, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              huber_delta: float) -> torch.Tensor:
    """The training loss of a head's output: Huber on values (regression) or the levels' cross-entropy."""
    if levels is None:
        return masked_huber(output, target, mask, huber_delta)
    return levels.loss(output, target, mask)
