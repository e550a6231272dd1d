"""The policy: Kosmos-2 reads each window frame (one image span per camera: ``<image>`` + latent tokens +
``</image>``, in the policy's camera order) with the instruction and one learnable action query; the
query's last hidden state is the frame feature; a history head runs over the W features; a chunk head maps
each step to K x A actions (DESIGN.md, "The policy").

``frame_features`` (one feature per frame, all B x W frames in one batched backbone call) and ``act``
(features -> chunks) are separate so a streaming runtime can compute each new frame's feature once, and a
segment batch (``schemas.sample.Batching.segments``) runs the backbone once per unique frame and gathers the
windows from the features (``forward(..., windows=)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from schemas.recorder import DEFAULT_CAMERA
from schemas.sample import SampleField, SegmentField
from schemas.train import ActionHead, HistoryHead, ModelConfig, TrainConfig
from vla_model.backbone import CLIP_MEAN, CLIP_STD, IMAGE_END, IMAGE_START, Backbone
from vla_model.heads import Levels, head_loss
from vla_data.common.refusal import Refusal


ADAPTER = "default"  # peft's name for the one adapter


class ConfigError(Refusal):
    """A model or LoRA setting that cannot work; the message names the setting."""


class VLAPolicy(nn.Module):
    """``inference=True`` leaves activation checkpointing off whatever ``config`` says: without a backward
    there is nothing to recompute, and it would only slow every forward."""

    def __init__(self, backbone: Backbone, config: ModelConfig, action_dim: int, chunk: int, *,
                 cameras: list[str] | tuple[str, ...] = (DEFAULT_CAMERA,), inference: bool = False,
                 levels: Levels | None = None) -> None:
        super().__init__()
        if not cameras or len(set(cameras)) != len(cameras):
            raise ConfigError(f"cameras {list(cameras)}: the policy needs one or more cameras, each named once")
        self.cameras = list(cameras)
        self.backbone = backbone.model
        self.tokenizer = backbone.tokenizer
        self.config = config
        self.action_dim, self.chunk = action_dim, chunk
        self.image_size, self.image_tokens = backbone.image_size, backbone.image_tokens
        d, h = backbone.hidden, config.hidden
        self.action_query = nn.Parameter(torch.randn(d) * 0.02)
        self.feature_norm = nn.LayerNorm(d)
        if config.history == HistoryHead.lstm:
            self.history: nn.Module = nn.LSTM(d, h, batch_first=True)
        else:
            self.history = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h), nn.GELU())
        # a discrete head: logits over each channel's levels (vla_model.heads)
        if (config.head == ActionHead.discrete) != (levels is not None):
            raise ConfigError(f"a {config.head.value} head {'needs' if levels is None else 'takes no'} action levels")
        if levels is not None and levels.values.shape[0] != action_dim:
            raise ConfigError(f"{levels.values.shape[0]} channels of action levels for {action_dim} action channels")
        self.levels = levels
        self.chunk_head = nn.Linear(h, chunk * action_dim * (1 if self.levels is None else self.levels.count))
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        ids = self.tokenizer.convert_tokens_to_ids([IMAGE_START, IMAGE_END])
        self._image_start, self._image_end = int(ids[0]), int(ids[1])
        self.lora_merged = False
        self._prompts: dict[str, torch.Tensor] = {}  # instruction -> its prompt's token ids (text_inputs)
        self._add_lora()
        if config.gradient_checkpointing and not inference:
            self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def _add_lora(self) -> None:
        lora = self.config.lora
        settings = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.targets)
        try:
            inject_adapter_in_model(settings, self.backbone)
        except ValueError as exc:
            raise ConfigError(f"LoRA targets {lora.targets!r} match no module of the backbone ({exc})") from exc
        for name, p in self.backbone.named_parameters():
            p.requires_grad_("lora_" in name)

    def merge_lora(self) -> None:
        """For inference only: fold each LoRA update into its base weight (peft's ``merge``) and put the base
        layer back in place, so a projection is one matmul instead of three plus peft's Python per call.
        Irreversible: training and ``adapter_state`` need the unmerged policy."""
        tuned = [(name, m) for name, m in self.backbone.named_modules() if isinstance(m, BaseTunerLayer)]
        for name, module in tuned:
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(self.backbone.get_submodule(parent), child, module.get_base_layer())
        self.lora_merged = True

    # -- inputs ------------------------------------------------------------------------------------------
    def pixels(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) uint8 RGB -> (N, 3, I, I) normalised float for the vision tower, on its device."""
        x = rgb.to(self.pixel_mean.device, non_blocking=True).float() / 255
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    PROMPT_CACHE = 4096  # instructions whose token ids are kept; a dataset has few distinct ones

    def prompt(self, instruction: str) -> torch.Tensor:
        """``<s>``, then per camera ``<image> [Q image slots] </image>``, then the instruction's words: token
        ids on the CPU, tokenised once per instruction (a batch repeats each one for every frame)."""
        ids = self._prompts.get(instruction)
        if ids is None:
            tok = self.tokenizer
            span = [self._image_start] + [tok.unk_token_id] * self.image_tokens + [self._image_end]
            words = tok(instruction, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([tok.bos_token_id] + span * len(self.cameras) + list(words), dtype=torch.long)
            if len(self._prompts) >= self.PROMPT_CACHE:
                self._prompts.clear()
            self._prompts[instruction] = ids
        return ids

    def text_inputs(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per instruction its ``prompt`` and then the action query, right-padded.

        Returns input ids (the query's slot holds pad), attention mask, image-slot mask, query positions.
        """
        position = {text: i for i, text in enumerate(dict.fromkeys(instructions))}  # each distinct instruction
        prompts = [self.prompt(text) for text in position]
        lengths = torch.tensor([len(p) for p in prompts])
        which = torch.tensor([position[text] for text in instructions], dtype=torch.long)
        length = int(lengths.max()) + 1
        table = torch.full((len(prompts), length), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, p in enumerate(prompts):
            table[i, : len(p)] = p
        query_at = lengths[which]
        ids = table[which]
        attention = (torch.arange(length)[None, :] <= query_at[:, None]).long()  # the query attends to all before it
        image_slots = torch.zeros(length, dtype=torch.bool)
        span = self.image_tokens + 2
        for c in range(len(self.cameras)):
            image_slots[2 + c * span : 2 + c * span + self.image_tokens] = True
        device = self.action_query.device
        return (ids.to(device, non_blocking=True), attention.to(device, non_blocking=True),
                image_slots.expand(len(ids), -1).to(device, non_blocking=True), query_at.to(device, non_blocking=True))

    # -- the model ---------------------------------------------------------------------------------------
    def frame_features(self, rgb: torch.Tensor, instructions: list[str]) -> torch.Tensor:
        """(N, C, 3, S, S) uint8 frames (C cameras, in the policy's order) and one instruction per frame -> (N, D)
        features, one backbone call. The vision tower reads the N x C images as one batch; Kosmos-2 places
        each frame's C image embeddings in its C image spans, in order."""
        if rgb.ndim != 5 or rgb.shape[1] != len(self.cameras):
            raise ValueError(f"frames of shape {tuple(rgb.shape)}: the policy reads (N, {len(self.cameras)}, 3, S, S), "
                             f"cameras {', '.join(self.cameras)}")
        ids, attention, image_slots, query_at = self.text_inputs(instructions)
        embeds = self.backbone.get_input_embeddings()(ids)
        rows = torch.arange(len(ids), device=ids.device)
        embeds = embeds.clone()
        embeds[rows, query_at] = self.action_query.to(embeds.dtype)
        out = self.backbone(
            pixel_values=self.pixels(rgb.flatten(0, 1)).to(embeds.dtype),
            inputs_embeds=embeds,
            attention_mask=attention,
            image_embeds_position_mask=image_slots,
            use_cache=False,
        )
        return out.last_hidden_state[rows, query_at]

    def act(self, features: torch.Tensor) -> torch.Tensor:
        """(B, W, D) frame features -> (B, W, K, A) normalised action chunks (a discrete head's read out)."""
        return self.readout(self.outputs(features))

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:
        """The head's ``outputs`` (``forward``'s) as (..., K, A) normalised actions: a regression head's are
        already; a discrete head's logits become the expected value or the most likely level."""
        return outputs if self.levels is None else self.levels.readout(outputs)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, huber_delta: float) -> torch.Tensor:
        """The training loss of ``forward``'s outputs against (B, W, K, A) normalised targets, over the
        unmasked entries: Huber for a regression head, the levels' cross-entropy for a discrete one."""
        return head_loss(self.levels, outputs, target.to(outputs.device), mask.to(outputs.device), huber_delta)

    def outputs(self, features: torch.Tensor) -> torch.Tensor:
        """(B, W, D) frame features -> the head's outputs: (B, W, K, A) normalised actions (regression) or
        (B, W, K, A, L) logits over each channel's levels (discrete).

        The head is small and runs in fp32 whatever the backbone's autocast: a CPU without bf16 LSTM kernels
        (oneDNN refuses the primitive) would otherwise fail the first step of a bf16 run."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = self.feature_norm(features.float())
            if isinstance(self.history, nn.LSTM):
                x, _ = self.history(x)
            else:
                x = self.history(x)
            b, w = x.shape[:2]
            if self.levels is None:
                return self.chunk_head(x).view(b, w, self.chunk, self.action_dim)
            return self.levels.logits(self.chunk_head(x).view(b, w, self.chunk, -1))

    def stack_cameras(self, rgb: dict[str, torch.Tensor]) -> torch.Tensor:
        """Camera name -> (..., 3, S, S) as one (..., C, 3, S, S) tensor in the policy's camera order; a camera the
        policy reads that is missing is refused by name (extra cameras are not read)."""
        missing = [c for c in self.cameras if c not in rgb]
        if missing:
            raise ValueError(f"no frames of camera(s) {', '.join(missing)}: the policy reads {', '.join(self.cameras)}, "
                             f"given {', '.join(rgb) or 'none'}")
        return torch.stack([rgb[c] for c in self.cameras], dim=-4)

    def forward(self, rgb: dict[str, torch.Tensor], instructions: list[str],
                windows: torch.Tensor | None = None) -> torch.Tensor:
        """Camera name -> (B, W, 3, S, S) uint8, and B instructions -> the head's ``outputs``: (B, W, K, A)
        normalised actions, or a discrete head's (B, W, K, A, L) logits (``readout`` turns them into actions).

        With ``windows`` (B, W) (a segment batch): camera name -> (F, 3, S, S) unique frames, one instruction per
        frame; the backbone reads each of the F frames once and window frame (b, j) is feature ``windows[b, j]``.
        """
        frames = self.stack_cameras(rgb)
        if windows is None:  # every window frame is its own frame: (B, W, C, 3, S, S)
            b, w = frames.shape[:2]
            per_frame = [text for text in instructions for _ in range(w)]  # sample-major, as frames.flatten(0, 1)
            return self.outputs(self.frame_features(frames.flatten(0, 1), per_frame).view(b, w, -1))
        if len(instructions) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(instructions)} instructions: a segment batch has one per frame")
        features = self.frame_features(frames, instructions)  # (F, D)
        return self.outputs(features[windows.to(features.device)])

    def hold_frozen_in(self, dtype: torch.dtype) -> int:
        """Store the frozen weight matrices of the backbone (its linear, convolution and embedding layers) in
        ``dtype``: training in bf16, autocast would cast them on every forward anyway. The LoRA weights, the
        heads and the small norm weights and biases of other layers stay fp32 (a CPU layer norm needs its
        weights in fp32). Returns the bytes saved."""
        saved = 0
        for module in self.backbone.modules():
            if not isinstance(module, nn.Linear | nn.Embedding | nn.Conv2d):
                continue
            for p in module.parameters(recurse=False):
                if not p.requires_grad and p.dtype != dtype:
                    saved += p.numel() * (p.element_size() - torch.empty(0, dtype=dtype).element_size())
                    p.data = p.data.to(dtype)
        return saved

    # -- what training changes ---------------------------------------------------------------------------
    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The LoRA weights as peft saves them (``get_peft_model_state_dict``: backbone module names, without
        the adapter's name)."""
        if self.lora_merged:
            raise RuntimeError("the LoRA weights were merged into the backbone for inference; there is no adapter")
        return {n: t.detach() for n, t in get_peft_model_state_dict(self.backbone).items()}

    def load_adapter_state(self, adapter: dict[str, torch.Tensor]) -> None:
        """Load weights saved by ``adapter_state`` (peft's ``set_peft_model_state_dict``)."""
        result = set_peft_model_state_dict(self.backbone, adapter)
        if result.unexpected_keys:
            raise ValueError(f"adapter weights the backbone has no place for: {result.unexpected_keys[:3]}")

    def head_state(self) -> dict[str, torch.Tensor]:
        """The action query and the heads (everything outside the backbone)."""
        return {n: t.detach() for n, t in self.state_dict().items() if not n.startswith("backbone.")}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "lora": [p for n, p in self.backbone.named_parameters() if p.requires_grad],
            "heads": [p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad],
        }


def batch_inputs(batch: dict) -> tuple[dict[str, torch.Tensor], list[str], torch.Tensor | None]:
    """What ``VLAPolicy.forward`` takes from a loader's batch (``vla_data.samples.loader``, either batching):
    ``policy(*batch_inputs(batch))`` -> (B, W, K, A), through a DDP wrapper too."""
    if SegmentField.window_frames in batch:
        return batch[SampleField.rgb], list(batch[SegmentField.frame_instruction]), batch[SegmentField.window_frames]
    return batch[SampleField.rgb], list(batch[SampleField.instruction]), None


def policy_for(backbone: Backbone, config: TrainConfig, action_dim: int, cameras: list[str], *,
               inference: bool = False, levels: Levels | None = None) -> VLAPolicy:
    """The one recipe for the policy of a run: its model settings and chunk, the data's action dim and cameras,
    and a discrete head's levels (training builds it from the store, loading from the checkpoint's record of the
    same)."""
    return VLAPolicy(backbone, config.model, action_dim, config.data.window.chunk, cameras=cameras, inference=inference,
                     levels=levels)
