"""``LocalPolicy``: a policy exported by `vla-data export`, run on the robot itself with onnxruntime.

```python
policy = LocalPolicy("policy/")                          # providers: CPU [default], or ["tensorrt", "cuda", "cpu"]
policy.reset("go to the bottle on the left")
chunk = policy.step({"front": frame})                     # (K, A) float32, physical units
```
The same calls as ``PolicyClient`` (``metadata``, ``reset``, ``step``, ``step_timed``, ``check``, ``close``), so
``Driver``, every execution mode, ``Snap`` and the ROS 2 node take either. Frames are raw (H, W, 3) uint8 in
the camera's colour order (or ``protocol.encoded`` JPEG/PNG bytes), prepared as the store's build prepared
them (``vla_client.preprocess``: the same code) and checked as the server checks them (``vla_client.frames``).
Like ``PolicyRunner``, a step runs the frame graph on the new frame only and keeps the last W features; before
W frames the first one stands in for the missing ones.

Needs the client's ``onnx`` extra (``pip install "./client[onnx]"``: onnxruntime, tokenizers, Pillow); no torch,
no transformers. The folder is checked when opened: its format, and every file's sha256 against policy.json.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from vla_client.frames import ExpectedFrames, FrameCheck
from vla_client.preprocess import decode_rgb, resize_frame
from vla_client.protocol import EncodedFrame

POLICY_FORMAT = 1  # the policy.json format this client reads (schemas.export.POLICY_FORMAT)
POLICY_FILE, FRAME_GRAPH, HEAD_GRAPH, TOKENIZER_FILE = "policy.json", "frame.onnx", "head.onnx", "tokenizer.json"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# the fields of policy.json this reader uses (a test checks they are every field schemas.export defines)
FIELDS = ("format", "vla_data_version", "checkpoint", "data", "model", "cameras", "image_size", "resize",
          "interpolation", "source_frame_sizes", "max_words", "pad_id", "feature_dim", "window", "chunk",
          "action_offset", "action_names", "action_channels", "action_levels", "norm_offset", "norm_scale", "opset",
          "precision", "exporter", "parity", "files")


def _runtime() -> tuple[ModuleType, Any]:
    """onnxruntime and ``tokenizers.Tokenizer``, or an ImportError that says which extra brings them."""
    try:
        import onnxruntime
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ImportError(f"LocalPolicy needs the robot client's onnx extra ({exc.name} is missing): "
                          'pip install "vla-data-client[onnx]" (or "./client[onnx]")') from exc
    return onnxruntime, Tokenizer


class PolicyFolderError(ValueError):
    """An export folder that cannot be run: not one, half-copied or damaged, or of another format."""


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in blocks (a graph's weights may be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_policy(folder: Path, verify: bool = True) -> dict[str, Any]:
    """policy.json of an export folder, checked: its format, its fields, and (``verify``) every file's sha256."""
    path = folder / POLICY_FILE
    if not path.is_file():
        raise PolicyFolderError(f"{folder} holds no {POLICY_FILE}: not a folder written by `vla-data export` "
                                "(or an unfinished copy of one)")
    try:
        policy = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyFolderError(f"{path} cannot be read ({exc}): copy the export folder again") from None
    if not isinstance(policy, dict) or policy.get("format") != POLICY_FORMAT:
        found = policy.get("format") if isinstance(policy, dict) else None
        raise PolicyFolderError(f"{path}: policy format {found}, this vla_client reads format {POLICY_FORMAT}: "
                                "export the checkpoint again with the vla-data that matches this client")
    missing = [f for f in FIELDS if f not in policy]
    if missing:
        raise PolicyFolderError(f"{path} lacks {', '.join(missing)}: copy the export folder again")
    unlisted = sorted({FRAME_GRAPH, HEAD_GRAPH, TOKENIZER_FILE} - set(policy["files"]))
    if unlisted:
        raise PolicyFolderError(f"{path} lists no checksum of {', '.join(unlisted)}: not what `vla-data export` "
                                "writes; export the checkpoint again")
    for name, digest in policy["files"].items():
        file = folder / name
        if not file.is_file():
            raise PolicyFolderError(f"{folder}: {name} is missing (a half-copied folder?): copy it again")
        if verify and sha256_of(file) != digest:
            raise PolicyFolderError(f"{folder}: {name} is not the file exported (its sha256 differs): copy it again")
    return policy


def _providers(names: Sequence[str] | None, trt_cache: Path | None) -> list[Any]:
    """onnxruntime's providers for ``names`` (cpu, cuda, tensorrt, or onnxruntime's own names), in order."""
    available = _runtime()[0].get_available_providers()
    chosen: list[Any] = []
    for name in names or ["cpu"]:
        provider = PROVIDERS.get(name.lower(), name)
        if provider not in available:
            raise ValueError(f"provider {name!r} is not in this onnxruntime (it has {', '.join(available)}); "
                             "install onnxruntime-gpu for cuda and tensorrt")
        if provider == PROVIDERS["tensorrt"]:  # fp16 engines, built once and kept
            options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                       "trt_engine_cache_path": str(trt_cache or Path.home() / ".cache" / "vla-data-trt")}
            chosen.append((provider, options))
        else:
            chosen.append(provider)
    return chosen


class LocalPolicy:
    """An export folder's graphs, tokenizer and action stats, stepped one frame at a time."""

    def __init__(self, folder: Path | str, providers: Sequence[str] | None = None, threads: int = 0,
                 verify: bool = True, trt_cache: Path | str | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise PolicyFolderError(f"{self.folder} is not a folder: give the folder `vla-data export -o` wrote")
        self.policy = read_policy(self.folder, verify)
        p = self.policy
        ort, tokenizer = _runtime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default
        chosen = _providers(providers, None if trt_cache is None else Path(trt_cache))
        self.frame_graph = ort.InferenceSession(str(self.folder / FRAME_GRAPH), options, providers=chosen)
        self.head_graph = ort.InferenceSession(str(self.folder / HEAD_GRAPH), options, providers=chosen)
        self.providers: list[str] = self.frame_graph.get_providers()  # what onnxruntime runs it on
        self.tokenizer = tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        self.cameras = [c["name"] for c in p["cameras"]]
        self.color_orders = {c["name"]: c["color_order"] for c in p["cameras"]}
        self.offset = np.asarray(p["norm_offset"], np.float64)
        self.scale = np.asarray(p["norm_scale"], np.float64)
        self.metadata: dict[str, Any] = {
            "checkpoint": p["checkpoint"], "model": p["model"], "precision": p["precision"],
            "device": ",".join(self.providers), "cameras": self.cameras, "color_orders": self.color_orders,
            "image_size": p["image_size"], "resize": p["resize"], "source_frame_sizes": p["source_frame_sizes"],
            "any_frame": False, "window": p["window"], "chunk": p["chunk"], "action_offset": p["action_offset"],
            "action_names": p["action_names"], "action_channels": p["action_channels"],
            "action_levels": p["action_levels"]}
        self._check = FrameCheck(ExpectedFrames.from_metadata(self.metadata))
        self.instruction: str | None = None
        self._text: tuple[np.ndarray, np.ndarray] | None = None
        self._features: deque[np.ndarray] = deque(maxlen=p["window"])

    # -- the calls PolicyClient has ------------------------------------------------------------------------
    def reset(self, instruction: str) -> None:
        """Start an episode with this instruction: forget every frame seen."""
        self._text = self.encode(instruction)
        self.instruction = instruction
        self._features.clear()

    def step(self, frames: dict[str, Any] | np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """One frame per camera (a dict by camera name; a bare array for a one-camera policy) -> the (K, A) chunk
        to execute from now on, physical units."""
        return self.step_timed(frames, timestamp)[0]

    def step_timed(self, frames: dict[str, Any] | np.ndarray, timestamp: float | None = None
                   ) -> tuple[np.ndarray, dict[str, float]]:
        """As ``step``, and the time it took (milliseconds: decode, policy, total), as the server reports it."""
        if self._text is None:
            raise RuntimeError("call reset(instruction) before step(frames)")
        started = time.perf_counter()
        rgb = self.prepare(frames)
        prepared = time.perf_counter()
        ids, length = self._text
        feature = self.frame_graph.run(["feature"], {"rgb": rgb, "text_ids": ids, "text_length": length})[0][0]
        if not self._features:
            self._features.extend([feature] * self.policy["window"])
        else:
            self._features.append(feature)
        chunk = self.head_graph.run(["chunk"], {"features": np.stack(self._features)[None]})[0][0]
        done = time.perf_counter()
        physical = (chunk.astype(np.float64) * self.scale + self.offset).astype(np.float32)
        return physical, {"decode": 1000 * (prepared - started), "policy": 1000 * (done - prepared),
                          "total": 1000 * (done - started)}

    def check(self, frames: dict[str, Any]) -> None:
        """``ValueError`` for a raw frame the policy is not trained to read, a ``FrameWarning`` for another aspect
        (``vla_client.frames``); ``step`` checks every frame so."""
        self._check(frames, stacklevel=4)

    def close(self) -> None:
        """Nothing to close (the same calls as ``PolicyClient``)."""

    def __enter__(self) -> LocalPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inputs --------------------------------------------------------------------------------------------
    def encode(self, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        """(1, L) word ids right-padded with the pad id, and (1,) their count; more than L tokens is refused."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("the instruction must be non-empty text, e.g. 'go to the bottle on the left'")
        words = self.tokenizer.encode(instruction, add_special_tokens=False).ids
        limit = self.policy["max_words"]
        if len(words) > limit:
            raise ValueError(f"the instruction is {len(words)} tokens; this exported policy takes at most {limit} "
                             "(export again with a larger --max-words)")
        ids = np.full((1, limit), self.policy["pad_id"], np.int64)
        ids[0, : len(words)] = words
        return ids, np.array([len(words)], np.int64)

    def prepare(self, frames: dict[str, Any] | np.ndarray) -> np.ndarray:
        """One step's raw frames -> (1, C, S, S, 3) uint8 RGB, as the store holds them."""
        if not isinstance(frames, dict):
            if len(self.cameras) != 1:
                raise ValueError(f"the policy reads cameras {', '.join(self.cameras)}: give the frames as a dict")
            frames = {self.cameras[0]: frames}
        missing = [c for c in self.cameras if c not in frames]
        if missing:
            raise ValueError(f"no frame of camera(s) {', '.join(missing)}: the policy reads {', '.join(self.cameras)}")
        raw, orders = {}, {}
        for camera in self.cameras:
            frame = frames[camera]
            if isinstance(frame, EncodedFrame):  # decoded images are RGB
                frame, orders[camera] = decode_rgb(frame.data), "rgb"
            if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
                what = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
                raise ValueError(f"camera {camera}: a frame is (H, W, 3) uint8 as the recorder writes it; got {what}")
            raw[camera] = frame
        self._check(raw, stacklevel=5)
        p = self.policy
        return np.stack([resize_frame(raw[c], p["image_size"], p["resize"], p["interpolation"],
                                      orders.get(c, self.color_orders[c])) for c in self.cameras])[None]
