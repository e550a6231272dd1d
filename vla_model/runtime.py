"""Inference from a checkpoint folder alone: ``Policy`` and, for a robot loop, ``PolicyRunner``.

```python
policy = Policy.from_checkpoint("runs/k2")           # a checkpoint, or a run (its latest checkpoint)
chunk = policy.predict(recent_frames, "go to the bottle on the left")   # (K, A), physical units
runner = policy.runner(); runner.reset(instruction)
for frame in camera: chunk = runner.step(frame)       # one backbone call per frame
chunk = runner.step({"front": front_frame, "rear": rear_frame})       # a policy trained on several cameras
```
Frames are raw camera frames, (H, W, 3) uint8, given as a dict by camera name (a policy of one camera also
takes the bare array), each in the colour order its training camera recorded (the checkpoint's ``cameras``)
unless ``color_order`` says otherwise: the colour order belongs to the camera, and the model only ever sees RGB. The checkpoint's ``Preprocessing`` turns them into what the model
was trained on (``vla_data.common.resize``). The policy reads
each frame on its own (``VLAPolicy.frame_features``), so a runner that keeps the last W frame features gives
the batch model's output while running the backbone on one frame per step. Before W frames have been seen,
the first frame stands in for the missing ones, exactly as ``vla_data.samples.windows`` pads a training window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from schemas import ColorOrder
from schemas.store import Feature, Preprocessing
from schemas.train import CheckpointMeta, Precision
from vla_client.frames import ExpectedFrames, parse_size
from vla_data.samples.normalize import Normalizer
from vla_data.common.resize import resize_frames
from vla_data.samples.windows import window_index
from vla_model.checkpoint import resolve
from vla_model.loading import load_policy
from vla_model.policy import VLAPolicy


DTYPES = {Precision.fp32: torch.float32, Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}
Frames = np.ndarray | dict[str, np.ndarray]  # one camera's array, or arrays by camera name
ColorOrders = ColorOrder | str | dict[str, ColorOrder | str] | None  # one order for every camera, or by camera name


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


class Policy:
    """A trained policy with the preprocessing and action stats it was trained with."""

    def __init__(self, model: VLAPolicy, meta: CheckpointMeta, path: Path | None = None) -> None:
        if not model.lora_merged:
            model.merge_lora()  # inference only: one matmul per projection
        self.model = model.eval()
        self.meta = meta
        self.path = path  # the checkpoint folder it came from
        self.preprocessing: Preprocessing = meta.preprocessing
        self.cameras: list[Feature] = list(meta.cameras)  # in the order the model reads them
        self.action_names = list(meta.actions.names)
        self.spec = meta.train_config.data.window
        self.normalizer = Normalizer(meta.stats)
        self.precision = Precision.fp32

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str | torch.device | None = None,
                        model: str | Path | None = None, precision: Precision | str = Precision.fp32,
                        compile: bool = False, announce: Callable[[str], None] | None = None) -> Policy:
        """Load model, adapter, heads, preprocessing and stats from a checkpoint (or a run's latest one).

        ``device``: "cpu", "cuda", "cuda:1", ... [default: CUDA when available]. No store is needed.
        ``model``: where the backbone is now, when not where the checkpoint records it (another machine, a
        moved directory); refused, naming the difference, unless its shapes are the trained backbone's.
        ``precision``: the backbone's, fp32, bf16 or fp16 (CUDA only). ``compile``: CUDA graphs for the backbone,
        compiled and warmed up here (eager where that cannot be; ``announce`` hears which).
        """
        folder = resolve(Path(path))
        trained, meta = load_policy(folder, pick_device(device), None if model is None else str(model))
        policy = cls(trained, meta, folder)
        policy.set_precision(Precision(precision))
        if compile:
            policy.compile(announce or (lambda line: None))
        return policy

    def set_precision(self, precision: Precision) -> None:
        """Run the backbone in ``precision`` (the heads stay fp32: they read the features as float32)."""
        if precision == Precision.fp16 and self.device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        self.model.backbone.to(DTYPES[precision])
        self.precision = precision

    def compile(self, announce: Callable[[str], None]) -> bool:
        """Compile the backbone with CUDA graphs (torch.compile, reduce-overhead) and warm it up on a few steps;
        where that cannot be (the CPU, a failed compile), stay eager and say so. Whether it is compiled."""
        if self.device.type != "cuda":
            announce("compile: CUDA graphs need a CUDA device; running eager on the CPU")
            return False
        eager = self.model.backbone
        try:
            self.model.backbone = torch.compile(eager, mode="reduce-overhead")
            size = self.preprocessing.image_size
            runner = self.runner()
            runner.reset("warm up")
            started = time.perf_counter()
            for _ in range(3):  # the first calls compile and record the graphs
                runner.step({c: np.zeros((size, size, 3), np.uint8) for c in self.camera_names})
            announce(f"compile: the backbone is compiled and warm ({time.perf_counter() - started:.0f} s)")
            return True
        except Exception as exc:  # a backend that cannot compile this model: eager still runs
            self.model.backbone = eager
            announce(f"compile failed ({type(exc).__name__}: {str(exc)[:200]}); running eager")
            return False

    @property
    def window(self) -> int:
        return self.spec.window

    @property
    def chunk(self) -> int:
        return self.spec.chunk

    @property
    def device(self) -> torch.device:
        return self.model.action_query.device

    @property
    def expected_frames(self) -> ExpectedFrames:
        """The frames this policy was trained on (their sizes before resizing, and its input side)."""
        return ExpectedFrames(self.preprocessing.image_size, tuple(parse_size(s) for s in self.meta.source_frame_sizes),
                              self.preprocessing.resize.value)

    def aspect_warning(self, height: int, width: int) -> str | None:
        """A warning when frames of this size have another aspect ratio than the frames trained on (they are
        resized to the same S x S, so objects look stretched otherwise than in training); None when it fits or
        the checkpoint does not say (trained before the sizes were recorded)."""
        return self.expected_frames.warning(height, width)

    def teleop_levels(self) -> dict[str, list[float]]:
        """Per action channel, the values the teleop drove with: min, 0 and max of the train split (``Snap`` snaps
        executed commands to them; ``hello`` and an export's policy.json carry them)."""
        stats = self.meta.stats.action
        return {n: sorted({round(c.min, 6), 0.0, round(c.max, 6)}) if c.min <= 0 <= c.max else
                [round(c.min, 6), round(c.max, 6)] for n, c in zip(self.action_names, stats, strict=True)}

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def color_orders(self, color_order: ColorOrders = None) -> dict[str, ColorOrder]:
        """Each camera's colour order: ``color_order`` as one order for every camera, or a dict by camera name
        (cameras it does not name keep theirs) [default: each camera's training order]."""
        orders = {c.name: ColorOrder(c.color_order or ColorOrder.bgr) for c in self.cameras}
        if isinstance(color_order, dict):
            unknown = sorted(set(color_order) - set(orders))
            if unknown:
                raise ValueError(f"colour order for camera(s) {', '.join(unknown)}: the policy reads "
                                 f"{', '.join(orders)}")
            orders |= {name: ColorOrder(order) for name, order in color_order.items()}
        elif color_order is not None:
            orders = dict.fromkeys(orders, ColorOrder(color_order))
        return orders

    def by_camera(self, frames: Frames) -> dict[str, np.ndarray]:
        """Frames as a dict by camera name: a dict is checked for every camera the policy reads (extra ones are
        ignored); a bare array is the one camera's, for a policy of one camera only."""
        if isinstance(frames, dict):
            missing = [c for c in self.camera_names if c not in frames]
            if missing:
                raise ValueError(f"no frames of camera(s) {', '.join(missing)}: the policy reads "
                                 f"{', '.join(self.camera_names)}, given {', '.join(map(str, frames)) or 'none'}")
            return {c: np.asarray(frames[c]) for c in self.camera_names}
        if len(self.cameras) > 1:
            raise ValueError(f"the policy reads {len(self.cameras)} cameras ({', '.join(self.camera_names)}): give "
                             "the frames as a dict by camera name")
        return {self.camera_names[0]: np.asarray(frames)}

    def prepare(self, frames: Frames, color_order: ColorOrders = None) -> torch.Tensor:
        """Raw frames, (H, W, 3) or (T, H, W, 3) uint8 per camera (see ``by_camera``) -> (T, C, 3, S, S) uint8 RGB.

        ``color_order``: the frames' channel order, "bgr" or "rgb", or a dict by camera [default: each camera's
        training recorder's]; converted to RGB as the store's frames were.
        """
        orders = self.color_orders(color_order)
        prepared, length = [], None
        for name, array in self.by_camera(frames).items():
            if array.ndim == 3:
                array = array[None]
            if (array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or not len(array)
                    or 0 in array.shape[1:3]):
                raise ValueError(f"frames{f' of camera {name}' if len(self.cameras) > 1 else ''} must be (H, W, 3) or "
                                 f"(T, H, W, 3) uint8 as the recorder writes them; got {array.shape} {array.dtype}")
            if length is not None and len(array) != length:
                raise ValueError(f"camera {name} has {len(array)} frames, camera {self.camera_names[0]} {length}: "
                                 "give every camera the same frames")
            length = len(array)
            prepared.append(torch.from_numpy(resize_frames(array, self.preprocessing, orders[name])).permute(0, 3, 1, 2))
        return torch.stack(prepared, dim=1)

    @torch.inference_mode()
    def features(self, rgb: torch.Tensor, instruction: str | list[str], batch_size: int = 64) -> torch.Tensor:
        """(T, C, 3, S, S) prepared uint8 frames and their instruction (or one per frame) -> (T, D) frame
        features, ``batch_size`` frames per backbone call."""
        texts = [instruction] * len(rgb) if isinstance(instruction, str) else list(instruction)
        parts = [self.model.frame_features(rgb[i : i + batch_size], texts[i : i + batch_size])
                 for i in range(0, len(rgb), batch_size)]
        return torch.cat(parts)

    @torch.inference_mode()
    def act(self, windows: torch.Tensor) -> np.ndarray:
        """(B, W, D) features of B windows (oldest first) -> (B, K, A) chunks of each window's last frame, physical."""
        normalised = self.model.act(windows)[:, -1]
        return self.normalizer.denormalize(normalised.float().cpu().numpy())

    def predict(self, frames: Frames, instruction: str, color_order: ColorOrders = None) -> np.ndarray:
        """The (K, A) chunk after the latest of ``frames`` (oldest first; the last W are used), physical units.

        ``frames`` and ``color_order`` as for ``prepare``. Recomputes every frame's feature; in a loop use
        ``runner()``, which computes each frame once.
        """
        recent = {c: (a[-self.window :] if a.ndim == 4 else a) for c, a in self.by_camera(frames).items()}
        rgb = self.prepare(recent, color_order)  # only what the window uses
        features = self.features(rgb, instruction)
        rows = window_index(len(rgb) - 1, len(rgb), self.spec).frames
        return self.act(features[torch.from_numpy(rows)][None])[0]

    def episode_chunks(self, rgb: Frames, instruction: str, batch_size: int = 64) -> np.ndarray:
        """Stored (T, S, S, 3) RGB frames of one episode, per camera (see ``by_camera``) -> (T, K, A): the chunk
        at every anchor t, physical.

        Each frame's feature is computed once and every window gathered from them, as a runner would.
        """
        stacked = torch.stack([torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)
                               for a in self.by_camera(rgb).values()], dim=1)
        features = self.features(stacked, instruction, batch_size)
        t = len(stacked)
        rows = np.stack([window_index(i, t, self.spec).frames for i in range(t)])
        chunks = [self.act(features[torch.from_numpy(rows[i : i + batch_size])])
                  for i in range(0, len(rows), batch_size)]
        return np.concatenate(chunks)

    def runner(self, color_order: ColorOrders = None) -> PolicyRunner:
        """A runner for one robot's cameras; ``color_order`` is their frames' channel order, as for ``prepare``."""
        return PolicyRunner(self, color_order)


class PolicyRunner:
    """One step per camera frame: ``reset(instruction)``, then ``step(frame) -> (K, A)`` in physical units.

    Keeps the features of the last W frames, so a step runs the backbone on the new frame only.
    """

    def __init__(self, policy: Policy, color_order: ColorOrders = None) -> None:
        self.policy = policy
        self.color_order = policy.color_orders(color_order)  # by camera name
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

    def step(self, frame: Frames, color_order: dict[str, ColorOrder] | None = None) -> np.ndarray:
        """One raw (H, W, 3) uint8 frame per camera (a dict by camera name; the bare array for a policy of one
        camera) -> the (K, A) chunk to execute from now on, physical units. ``color_order``: this step's
        frames of the cameras it names are in that order (e.g. decoded JPEGs, RGB), the others in the runner's."""
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before step(frame)")
        shapes = {c: np.shape(f) for c, f in self.policy.by_camera(frame).items()}
        if any(len(shape) != 3 for shape in shapes.values()):
            raise ValueError(f"step takes one (H, W, 3) frame per camera; got shape(s) "
                             f"{', '.join(f'{c} {s}' for c, s in shapes.items())}")
        return self.advance(self.policy.features(self.prepare(frame, color_order), self.instruction)[0])

    def prepare(self, frame: Frames, color_order: dict[str, ColorOrder] | None = None) -> torch.Tensor:
        """One step's frames as the model reads them, (1, C, 3, S, S), in this runner's colour orders (or
        ``color_order``'s, for the cameras it names)."""
        return self.policy.prepare(frame, self.color_order | (color_order or {}))

    def advance(self, feature: torch.Tensor) -> np.ndarray:
        """The step after a frame whose (D,) feature was computed already (``step`` computes it; a server that
        batches several robots' frames into one backbone call hands each runner its own)."""
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before step(frame)")
        if not self._features:
            self._features.extend([feature] * self.policy.window)  # before the start, the first frame stands in
        else:
            self._features.append(feature)
        self.steps += 1
        return self.policy.act(torch.stack(tuple(self._features))[None])[0]
