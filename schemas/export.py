"""`vla-data export`: its settings, and ``policy.json``, everything a robot needs beside the ONNX graphs.

The robot reads ``policy.json`` with ``vla_client.local.LocalPolicy`` (torch- and pydantic-free: plain json);
this model is the one definition of the file, and a test checks that the robot reads every field it defines.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.history import DataPin
from schemas.train import Precision

POLICY_FORMAT = 1  # policy.json's format; LocalPolicy refuses another
POLICY_FILE = "policy.json"
FRAME_GRAPH, HEAD_GRAPH, TOKENIZER_FILE = "frame.onnx", "head.onnx", "tokenizer.json"


class ExportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opset: int = Field(18, ge=18, description="ONNX opset of the graphs (18 or later: the antialiased resize).")
    precision: Precision = Field(Precision.fp32, description="fp32, or fp16 (the frame graph's weights and "
                                 "activations in float16, for a GPU's TensorRT or CUDA provider; the head stays fp32).")
    max_words: int = Field(32, ge=1, le=512, description="The longest instruction the frame graph takes, in tokens "
                           "(the graph's shapes are static; a longer instruction is refused on the robot).")
    min_cosine: float | None = Field(None, gt=0, le=1, description="The export is refused when a frame feature's "
                                     "cosine to PyTorch's is below this [default: 0.99999 fp32, 0.999 fp16].")
    max_chunk_error: float | None = Field(None, gt=0, description="... or when a chunk entry differs from PyTorch's "
                                          "by more than this, physical units [default: 1e-4 fp32, 0.05 fp16].")

    @model_validator(mode="after")
    def _no_bf16(self) -> ExportOptions:
        if self.precision == Precision.bf16:
            raise ValueError("precision bf16: onnxruntime runs no bf16 graph on the CPU; export fp32 or fp16")
        return self

    @property
    def cosine_floor(self) -> float:
        return self.min_cosine or (0.99999 if self.precision == Precision.fp32 else 0.999)

    @property
    def chunk_tolerance(self) -> float:
        return self.max_chunk_error or (1e-4 if self.precision == Precision.fp32 else 0.05)


class ExportCamera(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    color_order: str = Field(description="bgr or rgb: the order of this camera's raw frames (converted to RGB).")


class Parity(BaseModel):
    """How far onnxruntime's results were from PyTorch's at export, on the same frames."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int
    min_feature_cosine: float
    max_feature_error: float
    max_chunk_error: float = Field(description="Physical units, over every chunk entry of every window.")


class ExportedPolicy(BaseModel):
    """``policy.json``: the policy a folder holds, how to feed it, and the sha256 of every other file in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = POLICY_FORMAT
    vla_data_version: str
    checkpoint: str = Field(description="The checkpoint folder exported.")
    data: DataPin | None = Field(description="The store version that checkpoint trained on (None: an older one).")
    model: str = Field(description="The backbone the policy runs on.")
    cameras: list[ExportCamera] = Field(description="In the order the frame graph reads them.")
    image_size: int = Field(description="S: each frame is resized to S x S, then read by the frame graph.")
    resize: str = Field(description="squash, letterbox or center-crop (vla_client.preprocess).")
    interpolation: str = Field(description="bilinear, bicubic or area.")
    source_frame_sizes: list[str] = Field(description="HxW of the frames trained on (vla_client.frames).")
    max_words: int = Field(description="L: the instruction's tokens are padded to L (text_ids, text_length).")
    pad_id: int
    feature_dim: int
    window: int
    chunk: int
    action_offset: int = Field(description="The chunk's first action is row t + action_offset of the recording.")
    action_names: list[str]
    action_channels: list[int]
    action_levels: dict[str, list[float]] = Field(description="Per channel, the values the teleop drove with.")
    norm_offset: list[float] = Field(description="Physical action = normalised chunk * norm_scale + norm_offset.")
    norm_scale: list[float]
    opset: int
    precision: Precision
    exporter: dict[str, str] = Field(description="Per graph, the exporter that wrote it (dynamo or torchscript).")
    parity: Parity
    files: dict[str, str] = Field(description="sha256 of every other file of the folder, by name.")
