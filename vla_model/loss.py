"""The training loss: Huber over the (B, W, K, A) chunk, averaged over unmasked entries only."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_huber(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Mean Huber loss over the entries where ``mask`` (B, W, K) is True, every action channel counted.

    Padded steps (repeated frames, past the episode end) contribute nothing and do not dilute the mean.
    A batch with no unmasked entry gives 0 (with a graph), never NaN.
    """
    if pred.shape != target.shape or pred.shape[:-1] != mask.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)} disagree")
    per_entry = F.huber_loss(pred.float(), target.float(), reduction="none", delta=delta)
    weights = mask.unsqueeze(-1).to(per_entry.dtype)
    count = weights.sum() * pred.shape[-1]
    return (per_entry * weights).sum() / count.clamp(min=1)
