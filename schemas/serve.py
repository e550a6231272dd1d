"""`vla-data serve`: its settings, and the metadata a robot gets in answer to ``hello``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.train import Precision

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on; anything but this machine needs a token file "
                      "or insecure.")
    port: int = Field(8765, ge=0, le=65535, description="Port to listen on (0: any free port).")
    device: str | None = Field(None, description="cpu, cuda, cuda:1, ... [default: cuda when available, else cpu].")
    precision: Precision = Field(Precision.fp32, description="The backbone's precision: fp32, bf16 or fp16 (CUDA).")
    token_file: str | None = Field(None, description="A file holding the shared secret every robot must send.")
    insecure: bool = Field(False, description="Listen beyond this machine without a token (a trusted network only).")
    compile: bool = Field(False, description="Compile the backbone with CUDA graphs (torch.compile, reduce-overhead) "
                          "at start and warm it up before taking robots; CUDA only, else served eager.")
    max_message_mb: float = Field(32.0, gt=0, description="Largest message accepted (a raw 720p frame is 2.7 MB).")
    any_frame: bool = Field(False, description="Act on frames of any size and aspect ratio (logged once per "
                            "connection) instead of refusing one smaller than the policy reads or more than 10% off "
                            "the training camera's aspect ratio.")

    @model_validator(mode="after")
    def _no_open_door(self) -> ServeConfig:
        if self.host not in LOCAL_HOSTS and self.token_file is None and not self.insecure:
            raise ValueError(f"host {self.host} listens beyond this machine: give token_file (a shared secret the "
                             "robots send), or insecure on a trusted network")
        return self


class ServeMetadata(BaseModel):
    """The answer to ``hello``: everything a robot needs to feed the policy and execute its chunks."""

    protocol: int
    vla_data_version: str
    checkpoint: str
    model: str = Field(description="The backbone the policy runs on.")
    precision: Precision
    device: str
    cameras: list[str] = Field(description="The cameras the policy reads, in order (the keys of a step's frames).")
    color_orders: dict[str, str] = Field(description="Per camera, the channel order of raw frames (encoded images "
                                         "decode to RGB and are converted).")
    image_size: int = Field(description="Frames are resized to image_size x image_size on the server.")
    source_frame_sizes: list[str] = Field(
        default_factory=list, description="HxW of the frames trained on, before resizing (empty: not recorded); a "
        "frame smaller or of another aspect ratio is refused unless any_frame (vla_client.frames).")
    any_frame: bool = Field(False, description="The server acts on frames of any size and aspect ratio.")
    resize: str
    window: int
    chunk: int
    action_offset: int
    action_names: list[str]
    action_channels: list[int] = Field(description="The recorder channels (indices into its action row) predicted.")
    action_units: str = "the recorder's units (the Twist values it sent: m/s and rad/s for the teleop recorder)"
    action_levels: dict[str, list[float]] = Field(
        description="Per action channel, the values the teleop drove with (min, 0, max of the train split), "
        "for snapping executed actions to them.")


class DriveReport(BaseModel):
    """`vla-data drive --json`: one recorded episode driven through a policy server (or an exported policy run
    here with onnxruntime), as the robot would."""

    url: str = Field(description="The server driven (ws://...), or the folder of the exported policy driven here.")
    episode: str
    instruction: str
    execution: str
    action_names: list[str]
    steps: int
    requests: int = Field(description="Chunks asked for (one per tick in first and ensemble).")
    stops: int = Field(description="Ticks that commanded zero velocity for want of a fresh chunk.")
    round_trip_ms: dict[str, float] = Field(description="Client-side time per request: p50, p99, max.")
    server_ms: dict[str, float] = Field(description="The server's time per request (decode and policy): p50, p99.")
    commands: list[list[float]] = Field(description="The command executed at each tick, physical units.")
    command_mae: list[float | None] = Field(
        description="Per channel, the commands against the recorded action after each frame (row t + offset).")
    warnings: list[str] = Field(default_factory=list, description="Frames of another aspect ratio than the "
                                "policy was trained on, per camera (the robot's client warns of them too).")
