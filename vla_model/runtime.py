"""Inference from a checkpoint folder alone: ``Policy`` and, for a robot loop, ``PolicyRunner``.

```python
policy = Policy.from_checkpoint("runs/k2")           # a checkpoint, or a run (its latest checkpoint)
chunk = policy.predict(recent_frames, "go to the bottle on the left")   # (K, A), physical units
runner = policy.runner(); runner.reset(instruction)
for frame in camera: chunk = runner.step(frame)       # one backbone call per frame
```
Frames are raw camera frames, (H, W, 3) uint8, in the colour order of the training recorder (the checkpoint's
``preprocessing.source_color_order``) unless ``color_order`` says otherwise: the colour order belongs to the
camera, and the model only ever sees RGB. The checkpoint's ``Preprocessing`` turns them into what the model
was trained on (``vla_data.resize``). The policy reads
each frame on its own (``VLAPolicy.frame_features``), so a runner that keeps the last W frame features gives
the batch model's output while running the backbone on one frame per step. Before W frames have been seen,
the first frame stands in for the missing ones, exactly as ``vla_data.windows`` pads a training window.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch

from schemas import ColorOrder
from schemas.store import Preprocessing
from schemas.train import CheckpointMeta
from vla_data.normalize import Normalizer
from vla_data.resize import resize_frames
from vla_data.windows import window_index
from vla_model.checkpoint import resolve
from vla_model.loading import load_policy
from vla_model.policy import VLAPolicy


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device`` checked against this machine; None: CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is visible on this machine; use cpu")
    return chosen


ASPECT_TOLERANCE = 0.02  # relative difference of width/height that still counts as the same aspect


class Policy:
    """A trained policy with the preprocessing and action stats it was trained with."""

    def __init__(self, model: VLAPolicy, meta: CheckpointMeta, path: Path | None = None) -> None:
        if not model.lora_merged:
            model.merge_lora()  # inference only: one matmul per projection
        self.model = model.eval()
        self.meta = meta
        self.path = path  # the checkpoint folder it came from
        self.preprocessing: Preprocessing = meta.preprocessing
        self.action_names = list(meta.actions.names)
        self.spec = meta.train_config.data.window
        self.normalizer = Normalizer(meta.stats)

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str | torch.device | None = None,
                        model: str | Path | None = None) -> Policy:
        """Load model, adapter, heads, preprocessing and stats from a checkpoint (or a run's latest one).

        ``device``: "cpu", "cuda", "cuda:1", ... [default: CUDA when available]. No store is needed.
        ``model``: where the backbone is now, when not where the checkpoint records it (another machine, a
        moved directory); refused, naming the difference, unless its shapes are the trained backbone's.
        """
        folder = resolve(Path(path))
        trained, meta = load_policy(folder, pick_device(device), None if model is None else str(model))
        return cls(trained, meta, folder)

    @property
    def window(self) -> int:
        return self.spec.window

    @property
    def chunk(self) -> int:
        return self.spec.chunk

    @property
    def device(self) -> torch.device:
        return self.model.action_query.device

    def aspect_warning(self, height: int, width: int) -> str | None:
        """A warning when frames of this size have another aspect ratio than the frames trained on (they are
        resized to the same S x S, so objects look stretched otherwise than in training); None when it fits or
        the checkpoint does not say (trained before the sizes were recorded)."""
        trained = [tuple(int(n) for n in size.split("x")) for size in self.meta.source_frame_sizes]
        if not trained or any(abs(width / height - w / h) <= ASPECT_TOLERANCE * w / h for h, w in trained):
            return None
        sizes = ", ".join(self.meta.source_frame_sizes)
        return (f"frames are {height}x{width} (aspect {width / height:.2f}), the policy was trained on {sizes} "
                f"(aspect {trained[0][1] / trained[0][0]:.2f}), resized ({self.preprocessing.resize.value}) to "
                f"{self.preprocessing.image_size}x{self.preprocessing.image_size}: the scene will look stretched "
                "otherwise than in training; use the training camera's resolution, or crop to its aspect")

    def prepare(self, frames: np.ndarray, color_order: ColorOrder | str | None = None) -> torch.Tensor:
        """Raw frames, (H, W, 3) or (T, H, W, 3) uint8 -> (T, 3, S, S) uint8 RGB.

        ``color_order``: the frames' channel order, "bgr" or "rgb" [default: the training recorder's,
        ``preprocessing.source_color_order``]; converted to RGB as the store's frames were.
        """
        array = np.asarray(frames)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or not len(array):
            raise ValueError(f"frames must be (H, W, 3) or (T, H, W, 3) uint8 as the recorder writes them; "
                             f"got {array.shape} {array.dtype}")
        pre = self.preprocessing
        if color_order is not None:
            pre = pre.model_copy(update={"source_color_order": ColorOrder(color_order)})
        return torch.from_numpy(resize_frames(array, pre)).permute(0, 3, 1, 2)

    @torch.inference_mode()
    def features(self, rgb: torch.Tensor, instruction: str, batch_size: int = 64) -> torch.Tensor:
        """(T, 3, S, S) prepared uint8 frames -> (T, D) frame features, ``batch_size`` frames per backbone call."""
        parts = [self.model.frame_features(rgb[i : i + batch_size], [instruction] * len(rgb[i : i + batch_size]))
                 for i in range(0, len(rgb), batch_size)]
        return torch.cat(parts)

    @torch.inference_mode()
    def act(self, windows: torch.Tensor) -> np.ndarray:
        """(B, W, D) features of B windows (oldest first) -> (B, K, A) chunks of each window's last frame, physical."""
        normalised = self.model.act(windows)[:, -1]
        return self.normalizer.denormalize(normalised.float().cpu().numpy())

    def predict(self, frames: np.ndarray, instruction: str, color_order: ColorOrder | str | None = None) -> np.ndarray:
        """The (K, A) chunk after the latest of ``frames`` (oldest first; the last W are used), physical units.

        ``color_order`` as for ``prepare``. Recomputes every frame's feature; in a loop use ``runner()``, which
        computes each frame once.
        """
        array = np.asarray(frames)
        rgb = self.prepare(array[-self.window :] if array.ndim == 4 else array, color_order)  # only what the window uses
        features = self.features(rgb, instruction)
        rows = window_index(len(rgb) - 1, len(rgb), self.spec).frames
        return self.act(features[torch.from_numpy(rows)][None])[0]

    def episode_chunks(self, rgb: np.ndarray, instruction: str, batch_size: int = 64) -> np.ndarray:
        """Stored (T, S, S, 3) RGB frames of one episode -> (T, K, A): the chunk at every anchor t, physical.

        Each frame's feature is computed once and every window gathered from them, as a runner would.
        """
        features = self.features(torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2), instruction,
                                 batch_size)
        rows = np.stack([window_index(t, len(rgb), self.spec).frames for t in range(len(rgb))])
        chunks = [self.act(features[torch.from_numpy(rows[i : i + batch_size])])
                  for i in range(0, len(rows), batch_size)]
        return np.concatenate(chunks)

    def runner(self, color_order: ColorOrder | str | None = None) -> PolicyRunner:
        """A runner for one camera; ``color_order`` is its frames' channel order, as for ``prepare``."""
        return PolicyRunner(self, color_order)


class PolicyRunner:
    """One step per camera frame: ``reset(instruction)``, then ``step(frame) -> (K, A)`` in physical units.

    Keeps the features of the last W frames, so a step runs the backbone on the new frame only.
    """

    def __init__(self, policy: Policy, color_order: ColorOrder | str | None = None) -> None:
        self.policy = policy
        self.color_order = ColorOrder(color_order) if color_order is not None else policy.preprocessing.source_color_order
        self.instruction: str | None = None
        self._features: deque[torch.Tensor] = deque(maxlen=policy.window)
        self.steps = 0  # frames seen since reset

    def reset(self, instruction: str) -> None:
        """Start an episode: forget every frame seen, and follow ``instruction`` from now on."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("the instruction must be non-empty text, e.g. 'go to the bottle on the left'")
        self.instruction = instruction
        self._features.clear()
        self.steps = 0

    def step(self, frame: np.ndarray) -> np.ndarray:
        """One raw (H, W, 3) uint8 frame -> the (K, A) chunk to execute from now on, physical units."""
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before step(frame)")
        if np.ndim(frame) != 3:
            raise ValueError(f"step takes one (H, W, 3) frame; got shape {np.shape(frame)}")
        feature = self.policy.features(self.policy.prepare(frame, self.color_order), self.instruction)[0]
        if not self._features:
            self._features.extend([feature] * self.policy.window)  # before the start, the first frame stands in
        else:
            self._features.append(feature)
        self.steps += 1
        return self.policy.act(torch.stack(tuple(self._features))[None])[0]
