"""Checks run on one real batch before the first step: a run that cannot learn is refused, with the fix.

Each failed check raises ``PreflightError`` naming what is wrong and what to change. The dry backward's
gradients are cleared afterwards and its dropout draws come from a forked RNG, so the first real step starts
from a clean slate and the same random state (a resumed run's restored RNG is not moved). The trainer runs
it on the prepared model, so it runs in the training precision (autocast) with the training's activation
checkpointing: it needs no more memory than a training step.
"""

from __future__ import annotations

import math

import torch

from schemas.sample import SampleField, SegmentField
from schemas.store import StoreManifest
from vla_model.policy import VLAPolicy, batch_inputs
from vla_data.common.refusal import Fix, Refusal


class PreflightError(Refusal):
    """The run would not learn (or would crash later); the message says which check failed and the fix."""


def preflight(policy: VLAPolicy, batch: dict, manifest: StoreManifest, window: int, huber_delta: float) -> dict[str, int]:
    """Run every check; returns trainable parameter counts per group for the log."""
    stats = manifest.stats
    values = [v for c in stats.action for v in (c.mean, c.std, c.min, c.max, c.q01, c.q99)]
    if not stats.action or not all(math.isfinite(v) for v in values):
        raise PreflightError("the store's action stats are missing or not finite; rebuild it with vla-data build-splits")
    if len(stats.action) != len(manifest.actions.names):
        raise PreflightError(f"the store has {len(manifest.actions.names)} action channels but stats for {len(stats.action)}")

    cameras, mask = batch[SampleField.rgb], batch[SampleField.chunk_mask]
    missing = [c for c in policy.cameras if c not in cameras]
    if missing:
        raise PreflightError(f"the batch has no frames of camera(s) {', '.join(missing)}; the model reads "
                             f"{', '.join(policy.cameras)}, the store holds {', '.join(manifest.camera_names)}")
    b = mask.shape[0]
    s = manifest.preprocessing.image_size
    windows = batch.get(SegmentField.window_frames)  # a segment batch: each frame once, and the windows' table
    frames = (b, window) if windows is None else (len(batch[SegmentField.frame_instruction]),)
    want = {f"{SampleField.rgb.value}[{c}]": (cameras[c], (*frames, 3, s, s)) for c in policy.cameras} | {
        SampleField.actions.value: (batch[SampleField.actions], (b, window, policy.chunk, policy.action_dim)),
        SampleField.chunk_mask.value: (mask, (b, window, policy.chunk)),
    } | ({} if windows is None else {SegmentField.window_frames.value: (windows, (b, window))})
    for field, (value, shape) in want.items():
        if tuple(value.shape) != shape:
            raise PreflightError(f"batch {field} has shape {tuple(value.shape)}, the model expects {shape}")
    if policy.action_dim != len(manifest.actions.names):
        raise PreflightError(
            f"the model predicts {policy.action_dim} action channels, the store holds {len(manifest.actions.names)} "
            f"({', '.join(manifest.actions.names)})"
        )
    wrong = {c: cameras[c].dtype for c in policy.cameras if cameras[c].dtype != torch.uint8}
    if wrong:
        raise PreflightError(f"batch rgb is {', '.join(f'{d} ({c})' for c, d in wrong.items())}; the loader must give "
                             "uint8 frames")
    if not bool(mask.any()):
        raise PreflightError(
            "the first batch has no unmasked action target: every chunk is padding. Check the action offset and "
            "the chunk against the episode lengths (inspect-sample shows one sample)",
            Fix({"data.window.action_offset": "N", "data.window.chunk": "K"}, "that fit the episodes"))

    groups = policy.parameter_groups()
    counts = {name: sum(p.numel() for p in params) for name, params in groups.items()}
    if not any(counts.values()):
        raise PreflightError("no parameter is trainable: check the LoRA targets and that heads exist",
                             Fix({"model.lora.targets": "REGEX"}, "matching the backbone's attention projections"))
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise PreflightError(f"parameter group(s) {empty} have nothing trainable",
                             Fix({"model.lora.targets": "REGEX"}, "matching the backbone's attention projections"))

    was_training = policy.training
    policy.train()
    policy.zero_grad(set_to_none=True)
    device = policy.action_query.device
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            _dry_step(policy, batch, huber_delta)
        _check_gradients(groups)
    finally:
        policy.zero_grad(set_to_none=True)
        policy.train(was_training)
    return counts


def _dry_step(policy: VLAPolicy, batch: dict, huber_delta: float) -> None:
    """One forward and backward as a training step does them; only the gradients outlive it."""
    outputs = policy(*batch_inputs(batch))
    loss = policy.loss(outputs, batch[SampleField.actions], batch[SampleField.chunk_mask], huber_delta)
    if not loss.requires_grad:
        raise PreflightError("the loss does not require grad: no trainable parameter reaches it")
    if not torch.isfinite(loss):
        raise PreflightError(f"the first loss is {loss.item()}; check the store's stats and frames")
    loss.backward()


def _check_gradients(groups: dict[str, list[torch.nn.Parameter]]) -> None:
    for name, params in groups.items():
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            raise PreflightError(f"no gradient reaches the {name} parameters after a backward pass")
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            raise PreflightError(f"the {name} parameters got non-finite gradients on the first batch")
        if not any(bool(g.abs().sum() > 0) for g in grads):
            raise PreflightError(f"every gradient of the {name} parameters is zero on the first batch")
