"""`vla-data export`: a trained policy as a folder a robot runs without torch (``vla_client.local.LocalPolicy``).

```
POLICY_DIR/
  frame.onnx       (+ frame.onnx.data past 1.8 GB of weights)   vla_model.export_graphs
  head.onnx
  tokenizer.json   the checkpoint's tokenizer, for the tokenizers package
  policy.json      schemas.export.ExportedPolicy: cameras, preprocessing, window, chunk, actions, stats, sha256s
```
The folder is written beside its place under a temporary name and renamed into place once whole, and only
after the export checked itself: onnxruntime runs both graphs on a few frames and the result is refused when it
is further from PyTorch's than the tolerance (``ExportOptions``), or when a graph holds an op that makes shapes
data-dependent (NonZero, ScatterND).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from schemas.export import FRAME_GRAPH, HEAD_GRAPH, POLICY_FILE, ExportCamera, ExportedPolicy, ExportOptions
from schemas.train import Precision
from vla_client.local import sha256_of
from vla_data import __version__
from vla_data.common.folders import check_folder, publishing
from vla_data.common.refusal import Refusal
from vla_model.export_graphs import check_graphs, export_graphs, forbidden_ops
from vla_model.runtime import Policy

CHECK_INSTRUCTION = "go to the bottle on the left"  # the instruction of the self-check (cut to fit max_words)


class ExportError(Refusal):
    """An export that cannot be published: the graphs are not the policy."""


def _check_instruction(policy: Policy, max_words: int) -> str:
    words = CHECK_INSTRUCTION.split()
    while len(words) > 1 and len(policy.model.tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) > max_words:
        words.pop()
    return " ".join(words)


JOB = "export"  # the temporary folder's name: .POLICY_DIR.export-PID.tmp


def export_policy(checkpoint: Path, out: Path, options: ExportOptions, announce: Callable[[str], None]
                  ) -> ExportedPolicy:
    """Export ``checkpoint`` (or a run's latest) to the folder ``out``, which must not exist yet (or be empty)."""
    check_folder(out, JOB)  # a taken folder is refused before the policy is loaded
    return export_loaded(Policy.from_checkpoint(checkpoint, "cpu"), out, options, announce)


def export_loaded(policy: Policy, out: Path, options: ExportOptions, announce: Callable[[str], None]
                  ) -> ExportedPolicy:
    """Export a loaded fp32 CPU policy (``Policy.from_checkpoint``'s, or a benchmark's) to the new folder ``out``."""
    with publishing(out, JOB, announce) as tmp:
        announce(f"exporting {policy.path or 'the policy'} ({options.precision.value}, opset {options.opset}, "
                 f"instructions up to {options.max_words} tokens)")
        graphs = export_graphs(policy, tmp, options)
        forbidden = forbidden_ops(tmp / FRAME_GRAPH) + forbidden_ops(tmp / HEAD_GRAPH)
        if forbidden:
            raise ExportError(f"the exported graphs hold {', '.join(forbidden)}: data-dependent shapes that "
                              "TensorRT cannot build; nothing published")
        rng = np.random.default_rng(0)
        size, cameras = policy.preprocessing.image_size, len(policy.cameras)
        frames = rng.integers(0, 256, (policy.window + 3, cameras, size, size, 3), dtype=np.uint8)
        parity = check_graphs(policy, tmp, graphs, frames, _check_instruction(policy, options.max_words))
        if parity.min_feature_cosine < options.cosine_floor:
            raise ExportError(f"{FRAME_GRAPH} is not the policy: a frame feature's cosine to PyTorch's is "
                              f"{parity.min_feature_cosine:.6f}, below {options.cosine_floor} (largest difference "
                              f"{parity.max_feature_error:.2e}); nothing published")
        if parity.max_chunk_error > options.chunk_tolerance:
            raise ExportError(f"{HEAD_GRAPH} (on {FRAME_GRAPH}'s features) is not the policy: a chunk entry differs "
                              f"from PyTorch's by {parity.max_chunk_error:.2e} physical units, over "
                              f"{options.chunk_tolerance}; nothing published")
        pre, meta = policy.preprocessing, policy.meta
        exported = ExportedPolicy(
            vla_data_version=__version__, checkpoint=str(policy.path or ""), data=meta.data, model=meta.backbone.source,
            cameras=[ExportCamera(name=c.name, color_order=policy.color_orders()[c.name].value) for c in policy.cameras],
            image_size=pre.image_size, resize=pre.resize.value, interpolation=pre.interpolation.value,
            source_frame_sizes=list(meta.source_frame_sizes), max_words=graphs.max_words, pad_id=graphs.pad_id,
            feature_dim=graphs.feature_dim, window=policy.window, chunk=policy.chunk,
            action_offset=policy.spec.action_offset, action_names=policy.action_names,
            action_channels=list(meta.actions.channels), action_levels=policy.teleop_levels(),
            norm_offset=policy.normalizer.offset.tolist(), norm_scale=policy.normalizer.scale.tolist(),
            opset=options.opset, precision=Precision(options.precision), exporter=graphs.exporter, parity=parity,
            files={p.name: sha256_of(p) for p in sorted(tmp.iterdir())})
        (tmp / POLICY_FILE).write_text(exported.model_dump_json(indent=2) + "\n")
    announce(f"parity on {parity.frames} frames: feature cosine >= {parity.min_feature_cosine:.6f}, chunk "
             f"difference <= {parity.max_chunk_error:.2e} physical units")
    return exported

