"""ONNX graphs of a trained policy, for a robot that runs onnxruntime without torch (``vla-data export``).

Two graphs with static shapes, split where ``PolicyRunner`` splits the work (one backbone call per frame, the
small head over the last W features):

``frame.onnx``  rgb (N, C, S, S, 3) uint8, text_ids (N, L) int64, text_length (N,) int64 -> feature (N, D) float32
    The frames as the store holds them (RGB, S = the preprocessing's image size, cameras in the policy's order);
    /255, the resize to the vision tower's size (bilinear, antialiased, as ``VLAPolicy.pixels``) and CLIP's
    normalisation happen inside. ``text_ids`` are the instruction's word ids right-padded to L with the pad id,
    ``text_length`` how many are real (``encode_instruction``). The prompt is laid out by a static concat,
    ``<s>``, per camera ``<image>`` + Q image embeddings + ``</image>``, then the L + 1 word slots, the action
    query at slot ``text_length`` (a where on that position, so no NonZero / ScatterND) and pad after it.
    Kosmos-2's text model reads it causally, so the query sees exactly the tokens ``VLAPolicy.frame_features``
    gives it, at the same positions; the pad after it changes nothing.
``head.onnx``   features (1, W, D) float32, oldest first -> chunk (1, K, A) float32, normalised (the last step of
    ``VLAPolicy.act``); ``policy.json`` holds the offset and scale that turn it into physical units.

``tokenizer.json`` (the ``tokenizers`` package reads it) is written beside them; ``pipelines.export`` adds
``policy.json`` (``schemas.export.ExportedPolicy``) and publishes the folder.

torch.export's exporter (``dynamo=True``) writes both graphs; the TorchScript exporter has no
``aten::_upsample_bilinear2d_aa`` (the antialiased resize, ONNX Resize ``antialias=1`` from opset 18), so it
serves only a store whose S is the tower's size. A graph whose weights pass ``EXTERNAL_DATA_BYTES`` (the full
Kosmos-2 in fp32) keeps them in ``frame.onnx.data`` beside ``frame.onnx``; onnxruntime finds it there.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from schemas.export import FRAME_GRAPH, HEAD_GRAPH, TOKENIZER_FILE, ExportOptions, Parity
from schemas.train import Precision
from vla_model.policy import VLAPolicy
from vla_model.runtime import Policy

EXTERNAL_DATA_BYTES = 1_800_000_000  # weights past this go to FILE.onnx.data (protobuf's limit is 2 GB)
FORBIDDEN_OPS = ("NonZero", "ScatterND", "ScatterElements")


def encode_instruction(tokenizer: PreTrainedTokenizerBase, instruction: str, max_words: int,
                       pad_id: int) -> tuple[np.ndarray, int]:
    """The instruction's word ids (no special tokens) right-padded to ``max_words`` with ``pad_id``, and how many
    are real; an instruction of more than ``max_words`` tokens is refused (the graph's L is fixed)."""
    if not instruction.strip():
        raise ValueError("the instruction must be non-empty text, e.g. 'go to the bottle on the left'")
    words = tokenizer(instruction, add_special_tokens=False)["input_ids"]
    if len(words) > max_words:
        raise ValueError(f"the instruction is {len(words)} tokens; the exported frame graph takes at most "
                         f"{max_words} (L = max_words; export again with a larger max_words)")
    ids = np.full(max_words, pad_id, np.int64)
    ids[: len(words)] = words
    return ids, len(words)


class FrameGraph(nn.Module):
    """``VLAPolicy.frame_features`` with static shapes: (rgb, text_ids, text_length) -> (N, D) features.

    The sequence is built unscaled and handed to Kosmos-2's text model as ``inputs_embeds`` with no image
    embeddings (so no masked scatter): the model multiplies all of it by ``embed_scale`` and adds the sinusoidal
    positions 2, 3, ... (from ``inputs_embeds`` they follow the slot, whatever the mask), as it does for
    ``frame_features``, whose image slots and query slot are filled before the same scaling. The mask ends at the
    query and attention is causal, so the pad after the query is never read by it. Same result as
    ``frame_features``: bitwise at L words; otherwise within float rounding (about 1e-6), the attention
    running over a longer (masked) sequence than that batch's.
    """

    def __init__(self, policy: VLAPolicy, image_size: int, max_words: int) -> None:
        super().__init__()
        self.policy = policy
        self.image_size, self.max_words = image_size, max_words
        self.cameras = len(policy.cameras)
        tok = policy.tokenizer
        table = policy.backbone.get_input_embeddings().weight.detach()
        self.register_buffer("bos", table[tok.bos_token_id].clone(), persistent=False)
        self.register_buffer("image_start", table[policy._image_start].clone(), persistent=False)
        self.register_buffer("image_end", table[policy._image_end].clone(), persistent=False)
        self.register_buffer("pad", table[tok.pad_token_id].clone(), persistent=False)
        self.prefix = 1 + self.cameras * (policy.image_tokens + 2)  # the query's position when text_length is 0
        self.length = self.prefix + max_words + 1  # T: the whole prompt

    def forward(self, rgb: torch.Tensor, text_ids: torch.Tensor, text_length: torch.Tensor) -> torch.Tensor:
        policy, n, d = self.policy, rgb.shape[0], self.bos.shape[0]
        images = rgb.permute(0, 1, 4, 2, 3).reshape(n * self.cameras, 3, self.image_size, self.image_size)
        embeds = policy.backbone.get_input_embeddings()
        pixels = policy.pixels(images).to(embeds.weight.dtype)
        image = policy.backbone.get_image_features(pixels, return_dict=True).pooler_output  # (N C, Q, D)
        image = image.reshape(n, self.cameras, -1, d)
        one = (n, 1, d)
        parts = [self.bos.expand(one)]
        for c in range(self.cameras):
            parts += [self.image_start.expand(one), image[:, c], self.image_end.expand(one)]
        slots = torch.cat([embeds(text_ids), self.pad.expand(one)], dim=1)  # (N, L + 1, D)
        at_query = torch.arange(self.max_words + 1, device=rgb.device)[None, :] == text_length[:, None]
        slots = torch.where(at_query[:, :, None], policy.action_query.to(slots.dtype), slots)
        sequence = torch.cat([*parts, slots], dim=1)  # (N, T, D), not yet scaled: the text model scales it
        query_at = text_length + self.prefix
        attention = (torch.arange(self.length, device=rgb.device)[None, :] <= query_at[:, None]).long()
        hidden = policy.backbone.text_model(inputs_embeds=sequence, attention_mask=attention,
                                            use_cache=False).last_hidden_state
        index = query_at.reshape(n, 1, 1).expand(n, 1, d)
        return torch.gather(hidden, 1, index).squeeze(1).float()

    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.parameters(), *self.buffers()])


class HeadGraph(nn.Module):
    """(1, W, D) features, oldest first -> (1, K, A) normalised chunk of the newest frame."""

    def __init__(self, policy: VLAPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy.act(features)[:, -1]

    def weight_bytes(self) -> int:
        """What the graph holds: the head's weights (the backbone it also carries is not read)."""
        parts = (self.policy.feature_norm, self.policy.history, self.policy.chunk_head)
        return sum(t.numel() * t.element_size() for part in parts for t in part.parameters())


def _onnx() -> tuple[ModuleType, ModuleType, ModuleType]:
    """onnx, onnxruntime and onnxruntime's float16 converter (the onnx extra), or an ImportError saying how to
    install them."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.transformers import float16
    except ImportError as exc:
        raise ImportError(f"the ONNX export needs {exc.name}: pip install 'vla-data[onnx]'") from exc
    return onnx, onnxruntime, float16


@dataclass(frozen=True)
class Graphs:
    """What ``export_graphs`` wrote: the frame graph's L and pad id, the feature size, and per graph the exporter
    that wrote it (dynamo or torchscript) and how long it took."""

    max_words: int  # L
    pad_id: int
    feature_dim: int  # D
    exporter: dict[str, str]
    export_seconds: dict[str, float]


def _save(module: FrameGraph | HeadGraph, args: tuple, path: Path, names: tuple[list[str], list[str]], opset: int,
          dynamo: bool) -> None:
    """One graph to ``path``; weights past ``EXTERNAL_DATA_BYTES`` go to ``path.name + '.data'`` beside it (the
    graph names that file by its relative name: keep the two together)."""
    external = module.weight_bytes() > EXTERNAL_DATA_BYTES
    inputs, outputs = names
    with _quiet():
        if dynamo:
            program = torch.onnx.export(module, args, input_names=inputs, output_names=outputs, opset_version=opset,
                                        dynamo=True, optimize=True, verbose=False)
            program.save(str(path), external_data=external)
        else:  # the TorchScript exporter writes external data by itself when the model passes 2 GB
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=opset,
                              dynamo=False, do_constant_folding=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' notes to their developers (deprecations, "torchvision is not installed", the LSTM's flat
    weights assigned during tracing) are not the user's to act on: silenced for the export, errors still raise."""
    noisy = logging.getLogger("torch.onnx")
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        noisy.setLevel(level)


def _export(module: FrameGraph | HeadGraph, args: tuple, path: Path, names: tuple[list[str], list[str]], opset: int,
            dynamo: bool) -> str:
    """``_save`` with torch.export's exporter (when ``dynamo``), else or where that fails the TorchScript one;
    which one wrote the graph."""
    failed = None
    if dynamo:
        try:
            _save(module, args, path, names, opset, True)
            return "dynamo"
        except Exception as exc:  # torch.export could not trace it: the TorchScript exporter may
            failed = exc
    try:
        _save(module, args, path, names, opset, False)
    except Exception as exc:
        if failed is None:
            raise
        raise RuntimeError(f"neither ONNX exporter could write {path.name}: dynamo: {type(failed).__name__}: "
                           f"{failed}; torchscript: {type(exc).__name__}: {exc}") from exc
    return "torchscript"


def export_graphs(policy: Policy, folder: Path, options: ExportOptions, *, batch: int = 1, dynamo: bool = True
                  ) -> Graphs:
    """Write ``frame.onnx``, ``head.onnx`` and ``tokenizer.json`` of a loaded policy into ``folder``.

    ``options.max_words``: L, the longest instruction the frame graph takes, in tokens. ``batch``: N, the frames
    per frame-graph call (1 for a robot's step). ``dynamo``: torch.export's exporter first, the TorchScript one
    where it fails (or only that one, when False); the TorchScript exporter has no antialiased resize, so it fails
    unless the store's S is the vision tower's size. ``options.precision`` fp16 converts the frame graph's
    weights and activations to float16 after export, its inputs and output staying as above; the head stays
    fp32. The policy's backbone is put back in fp32 first.
    """
    model = policy.model.float().eval()
    policy.precision = Precision.fp32
    size, tokenizer, max_words = policy.preprocessing.image_size, model.tokenizer, options.max_words
    frame, head = FrameGraph(model, size, max_words).eval(), HeadGraph(model).eval()
    d, pad = frame.bos.shape[0], int(tokenizer.pad_token_id)
    frame_args = (torch.zeros(batch, len(model.cameras), size, size, 3, dtype=torch.uint8),
                  torch.full((batch, max_words), pad), torch.ones(batch, dtype=torch.long))
    seconds, exporters = {}, {}
    with torch.no_grad():
        for path, module, args, io in (
            (FRAME_GRAPH, frame, frame_args, (["rgb", "text_ids", "text_length"], ["feature"])),
            (HEAD_GRAPH, head, (torch.zeros(1, policy.window, d),), (["features"], ["chunk"])),
        ):
            started = time.perf_counter()
            exporters[path] = _export(module, args, folder / path, io, options.opset, dynamo)
            seconds[path] = round(time.perf_counter() - started, 2)
    if options.precision == Precision.fp16:
        to_fp16(folder / FRAME_GRAPH)
    save_tokenizer(tokenizer, folder / TOKENIZER_FILE)
    return Graphs(max_words=max_words, pad_id=pad, feature_dim=d, exporter=exporters, export_seconds=seconds)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    """The tokenizer as one ``tokenizer.json`` that ``tokenizers.Tokenizer.from_file`` reads and encodes as
    ``tokenizer(text, add_special_tokens=False)`` does: a fast tokenizer's own backend (transformers 5's
    XLMRobertaTokenizer is one), else transformers' converter of the slow one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        from transformers.convert_slow_tokenizer import convert_slow_tokenizer

        backend = convert_slow_tokenizer(tokenizer)
    backend.save(str(path))


def to_fp16(path: Path) -> None:
    """Convert a graph's float32 weights and activations to float16 in place, keeping float32 inputs and outputs
    (``onnxruntime.transformers.float16``, shipped with onnxruntime). Weights held in ``path.name + '.data'``
    stay there."""
    onnx, _, float16 = _onnx()
    convert_float_to_float16 = float16.convert_float_to_float16

    data = path.with_name(path.name + ".data")
    external = data.exists()
    half = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True, disable_shape_infer=external)
    if external:
        data.unlink()
    onnx.save(half, str(path), save_as_external_data=external, location=data.name)


def forbidden_ops(path: Path | str) -> list[str]:
    """The NonZero / ScatterND / ScatterElements nodes of a graph (its subgraphs and functions too): none of
    them may be there, they would make a shape data-dependent or scatter by mask."""
    onnx = _onnx()[0]
    model = onnx.load(str(path), load_external_data=False)
    found = []

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            if node.op_type in FORBIDDEN_OPS:
                found.append(f"{node.op_type} ({node.name})")
            for attribute in node.attribute:  # the bodies of If, Loop, Scan
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    visit(sub)

    visit(model.graph)
    for function in model.functions:
        found += [f"{n.op_type} ({function.name})" for n in function.node if n.op_type in FORBIDDEN_OPS]
    return found


def check_graphs(policy: Policy, folder: Path, graphs: Graphs, rgb: np.ndarray, instruction: str,
                 threads: int = 1) -> Parity:
    """Run ``folder``'s graphs with onnxruntime (CPU) on (T, C, S, S, 3) uint8 prepared frames, T >= W, one
    frame per call, and compare with ``Policy.features`` and ``VLAPolicy.act`` on the same frames: the lowest
    cosine and largest difference of the features, and the largest difference of any chunk entry of any window,
    in physical units."""
    ort = _onnx()[1]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    frame, head = (ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
                   for name in (FRAME_GRAPH, HEAD_GRAPH))
    ids, length = encode_instruction(policy.model.tokenizer, instruction, graphs.max_words, graphs.pad_id)
    n = frame.get_inputs()[0].shape[0]
    rows = [rgb[i : i + n] for i in range(0, len(rgb) - n + 1, n)]
    got = np.concatenate([frame.run(["feature"], {"rgb": r, "text_ids": np.tile(ids, (n, 1)),
                                                  "text_length": np.full(n, length)})[0] for r in rows])
    want = policy.features(torch.from_numpy(rgb[: len(got)]).permute(0, 1, 4, 2, 3), instruction).float()
    w = policy.window
    windows = [slice(i, i + w) for i in range(len(got) - w + 1)]
    chunks = np.concatenate([head.run(["chunk"], {"features": got[None, s]})[0] for s in windows])
    with torch.no_grad():
        wanted = torch.cat([policy.model.act(want[None, s])[:, -1] for s in windows]).numpy()
    expected = want.numpy()
    cosine = (got * expected).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(expected, axis=-1))
    physical = np.abs(chunks - wanted) * policy.normalizer.scale  # normalised -> physical units
    return Parity(frames=len(got), min_feature_cosine=float(cosine.min()),
                  max_feature_error=float(np.abs(got - expected).max()), max_chunk_error=float(physical.max()))
