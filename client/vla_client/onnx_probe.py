"""Prototype: run a policy exported by ``vla_model.export_graphs`` with onnxruntime, without torch or transformers.

```python
policy = OnnxPolicy("exported/")                  # frame.onnx, head.onnx, tokenizer.json, graphs.json
policy.reset("go to the bottle on the left")
chunk = policy.step({"front": rgb})               # (K, A) float32, physical units
```
Frames are prepared as the store holds them: (S, S, 3) uint8 RGB per camera (``graphs.json``'s ``image_size``
and ``cameras``); turning a raw camera frame into one (colour order, squash/letterbox resize) stays outside.
Like ``PolicyRunner``, a step computes the new frame's feature once and keeps the last W; before W frames the
first one stands in for the missing ones.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


class OnnxPolicy:
    """The two exported graphs, the tokenizer and the action stats of one export folder."""

    def __init__(self, folder: Path | str, threads: int = 0) -> None:
        folder = Path(folder)
        self.info = json.loads((folder / "graphs.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default
        providers = ["CPUExecutionProvider"]
        self.frame = ort.InferenceSession(str(folder / "frame.onnx"), options, providers=providers)
        self.head = ort.InferenceSession(str(folder / "head.onnx"), options, providers=providers)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.offset = np.asarray(self.info["action_offset"], np.float64)
        self.scale = np.asarray(self.info["action_scale"], np.float64)
        self.text: tuple[np.ndarray, np.ndarray] | None = None
        self.features: deque[np.ndarray] = deque(maxlen=self.info["window"])

    def encode(self, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        """(1, L) word ids right-padded with the pad id, and (1,) their count; more than L tokens is refused."""
        if not instruction.strip():
            raise ValueError("the instruction must be non-empty text, e.g. 'go to the bottle on the left'")
        words = self.tokenizer.encode(instruction, add_special_tokens=False).ids
        limit = self.info["max_words"]
        if len(words) > limit:
            raise ValueError(f"the instruction is {len(words)} tokens; the exported frame graph takes at most {limit}")
        ids = np.full((1, limit), self.info["pad_id"], np.int64)
        ids[0, : len(words)] = words
        return ids, np.array([len(words)], np.int64)

    def reset(self, instruction: str) -> None:
        """Start an episode: forget every frame seen, and follow ``instruction`` from now on."""
        self.text = self.encode(instruction)
        self.features.clear()

    def feature(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        """One (S, S, 3) uint8 RGB frame per camera -> its (D,) feature."""
        if self.text is None:
            raise RuntimeError("call reset(instruction) before step(frames)")
        missing = [c for c in self.info["cameras"] if c not in frames]
        if missing:
            raise ValueError(f"no frame of camera(s) {', '.join(missing)}; the policy reads "
                             f"{', '.join(self.info['cameras'])}")
        rgb = np.stack([frames[c] for c in self.info["cameras"]])[None]  # (1, C, S, S, 3)
        size = self.info["image_size"]
        if rgb.dtype != np.uint8 or rgb.shape[2:] != (size, size, 3):
            raise ValueError(f"frames must be ({size}, {size}, 3) uint8 RGB; got {rgb.shape[2:]} {rgb.dtype}")
        ids, length = self.text
        return self.frame.run(["feature"], {"rgb": rgb, "text_ids": ids, "text_length": length})[0][0]

    def step(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        """The (K, A) chunk after this frame, physical units."""
        feature = self.feature(frames)
        if not self.features:
            self.features.extend([feature] * self.info["window"])
        else:
            self.features.append(feature)
        chunk = self.head.run(["chunk"], {"features": np.stack(self.features)[None]})[0][0]
        return (chunk.astype(np.float64) * self.scale + self.offset).astype(np.float32)


def probe(folder: Path | str, frames: list[dict[str, np.ndarray]], instruction: str) -> np.ndarray:
    """Run an episode's prepared frames (oldest first) through the exported policy: (T, K, A) chunks."""
    policy = OnnxPolicy(folder)
    policy.reset(instruction)
    return np.stack([policy.step(f) for f in frames])
