"""The Kosmos-2 backbone and its tokenizer: from the local Hugging Face cache, a local directory, or built
in code (``tiny-random``). Nothing is ever downloaded: every load passes ``local_files_only=True``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, Kosmos2Config, Kosmos2Model, PreTrainedTokenizerBase, XLMRobertaTokenizer

from schemas.train import TINY_RANDOM
from vla_data.common.refusal import Fix, Refusal

IMAGE_START, IMAGE_END = "<image>", "</image>"
# CLIP's pixel statistics: Kosmos-2's vision tower was trained on images normalised with them.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_WORDS = (
    "navigate around obstacles and reach the front of beverage bottle on left right go to a an stop move "
    "forward back turn box boxes red blue green door table chair pick up put place drive towards"
).split()


INIT_SCALE = 5.0  # tiny-random only: at the default 0.02 a 64-wide random model maps every frame to ~one feature


class ModelNotFound(Refusal):
    """The model is not in the local cache or directory; the message says how to place it."""


@dataclass
class Backbone:
    model: Kosmos2Model
    tokenizer: PreTrainedTokenizerBase
    source: str

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def hidden(self) -> int:
        return int(self.model.config.text_config.embed_dim)

    @property
    def image_tokens(self) -> int:
        return int(self.model.config.latent_query_num)


def tiny_tokenizer() -> XLMRobertaTokenizer:
    """A small XLM-R style tokenizer built in memory: Kosmos-2's special ids, a few words, letters as fallback."""
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = dict.fromkeys(TINY_WORDS + [w.capitalize() for w in TINY_WORDS])
    vocab += [("\u2581" + w, -1.0) for w in words]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,"]
    vocab += [("\u2581", -3.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_START, IMAGE_END]})
    return tokenizer


def tiny_config(vocab_size: int) -> Kosmos2Config:
    """A Kosmos-2 small enough to train on 2 CPU cores in seconds (56x56 images, 4 image tokens)."""
    return Kosmos2Config(
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 56, "patch_size": 14, "initializer_factor": INIT_SCALE},
        text_config={"vocab_size": vocab_size, "embed_dim": 64, "ffn_dim": 128, "layers": 2, "attention_heads": 4,
                     "max_position_embeddings": 512, "dropout": 0.0, "attention_dropout": 0.0,
                     "init_std": 0.02 * INIT_SCALE},
        latent_query_num=4,
    )


def build_tiny_random() -> Backbone:
    """The same random weights every time (its own RNG: the caller's seed and RNG state are untouched)."""
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20251106)
        model = Kosmos2Model(tiny_config(len(tokenizer)))
    return Backbone(model=model, tokenizer=tokenizer, source=TINY_RANDOM)


def locate(source: str) -> str:
    """What finds the backbone again from any working directory: a local directory's absolute path; a hub id
    or ``tiny-random`` as given."""
    local = Path(source).expanduser()
    return str(local.resolve()) if source != TINY_RANDOM and local.is_dir() else source


def load_backbone(source: str) -> Backbone:
    """``tiny-random``, a local directory, or a hub id present in the local cache; ``Backbone.source`` is
    ``locate(source)``."""
    if source == TINY_RANDOM:
        return build_tiny_random()
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().is_dir():
        raise ModelNotFound(f"model {source}: no such directory")
    name = locate(source)
    try:
        model = Kosmos2Model.from_pretrained(name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise ModelNotFound(
            f"model {source}: not found locally ({type(exc).__name__}); vla-data never downloads. On a machine "
            f"with network run `huggingface-cli download {source}` (it fills {cache}) and copy that cache here",
            Fix({"model.source": "DIR"}, "(a folder with config.json, model.safetensors and the tokenizer files)"),
            Fix({"model.source": TINY_RANDOM}, "(needs nothing)"),
        ) from exc
    missing = [t for t in (IMAGE_START, IMAGE_END) if t not in tokenizer.get_vocab()]
    if missing:
        raise ModelNotFound(f"model {source}: its tokenizer lacks {missing}; is this a Kosmos-2 model?")
    return Backbone(model=model, tokenizer=tokenizer, source=name)
