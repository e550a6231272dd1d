"""Rebuilding a trained policy from a checkpoint folder alone (no store): backbone, LoRA, heads."""

from __future__ import annotations

from pathlib import Path

import torch

from schemas.store import StoreManifest
from schemas.train import CheckpointMeta
from vla_model import checkpoint as ckpt
from vla_data.common.refusal import Fix
from vla_data.samples.normalize import Normalizer
from vla_model.backbone import ModelNotFound, load_backbone
from vla_model.heads import Levels
from vla_model.policy import ADAPTER, VLAPolicy, policy_for

# the backbone settings a checkpoint's adapter depends on; the weights found must have the same
SHAPE_KEYS = {
    "text_config": ("vocab_size", "embed_dim", "layers", "attention_heads", "ffn_dim"),
    "vision_config": ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size"),
}


def load_trained(policy: VLAPolicy, adapter: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> None:
    """Load LoRA and head weights saved from ``adapter_state`` / ``head_state``; every name must match."""
    saved = {n.replace(f".{ADAPTER}.", "."): t for n, t in adapter.items()}  # checkpoints from before peft's names
    wrong = sorted(set(saved) ^ set(policy.adapter_state())) + sorted(set(heads) ^ set(policy.head_state()))
    if wrong:
        raise ckpt.CheckpointError(f"the checkpoint's weights do not fit this model (e.g. {wrong[:3]})")
    policy.load_adapter_state(saved)
    policy.load_state_dict(heads, strict=False)


def check_backbone(meta: CheckpointMeta, found: dict, source: str | None = None) -> None:
    """Refuse a backbone (``found``: its config as a dict, loaded from ``source`` [default: the checkpoint's])
    of other shapes than the checkpoint's; the message names every setting that differs."""
    source = source or meta.backbone.source
    saved = meta.backbone.config
    differ = [
        f"{part}.{key}: checkpoint {saved.get(part, {}).get(key)}, found {found.get(part, {}).get(key)}"
        for part, keys in SHAPE_KEYS.items()
        for key in keys
        if saved.get(part, {}).get(key) != found.get(part, {}).get(key)
    ]
    if saved.get("latent_query_num") != found.get("latent_query_num"):
        differ.append(f"latent_query_num: checkpoint {saved.get('latent_query_num')}, found {found.get('latent_query_num')}")
    if differ:
        raise ckpt.CheckpointError(f"the backbone {source} is not the one the checkpoint was trained on "
                                   f"({meta.backbone.source}): {'; '.join(differ)}")


def check_store(meta: CheckpointMeta, manifest: StoreManifest) -> None:
    """Refuse a store the checkpoint cannot be scored on; the message names every setting that differs."""
    differ = []
    if len(meta.actions.names) != len(manifest.actions.names):
        differ.append(f"action dimension: checkpoint {len(meta.actions.names)}, store {len(manifest.actions.names)}")
    if meta.actions.names != manifest.actions.names:
        differ.append(f"action names: checkpoint {meta.actions.names}, store {manifest.actions.names}")
    if meta.actions.channels != manifest.actions.channels:
        differ.append(f"action channels: checkpoint {meta.actions.channels}, store {manifest.actions.channels}")
    missing = [c for c in meta.camera_names if c not in manifest.camera_names]
    if missing:
        differ.append(f"camera(s) {', '.join(missing)}: the checkpoint reads {', '.join(meta.camera_names)}, the store "
                      f"holds {', '.join(manifest.camera_names)}")
    ours, theirs = meta.preprocessing.model_dump(mode="json"), manifest.preprocessing.model_dump(mode="json")
    differ += [f"preprocessing {key}: checkpoint {ours[key]}, store {theirs[key]}" for key in ours if ours[key] != theirs[key]]
    if differ:
        raise ckpt.CheckpointError("the checkpoint does not fit this store (" + "; ".join(differ) + "); evaluate it on a "
                                   "store built like its training store (`vla-data info STORE` shows how one was built)")


def load_policy(path: Path, device: str | torch.device = "cpu", model: str | None = None) -> tuple[VLAPolicy, CheckpointMeta]:
    """The policy of a checkpoint (or of a run's latest checkpoint), in eval mode on ``device``.

    ``model``: where the backbone is now (a directory, hub id or ``tiny-random``), e.g. on another machine
    [default: the source the checkpoint records]; it must have the shapes the checkpoint was trained on.
    """
    path = ckpt.resolve(path)
    meta = ckpt.load_meta(path)
    source = model or meta.backbone.source
    try:
        backbone = load_backbone(source)
    except ModelNotFound as exc:
        if model is not None:
            raise
        raise ModelNotFound(f"{path} was trained on the backbone {source}, which is not found here "
                            f"({exc.message})", Fix({"model": "DIR"}, "where the backbone is now, if it has moved")) from exc
    check_backbone(meta, backbone.model.config.to_dict(), source)
    levels = (None if meta.action_levels is None else
              Levels(meta.action_levels, Normalizer(meta.stats), meta.train_config.model.readout))
    policy = policy_for(backbone, meta.train_config, len(meta.action_names), meta.camera_names, inference=True,
                        levels=levels)
    load_trained(policy, *ckpt.load_weights(path))
    return policy.to(device).eval(), meta
