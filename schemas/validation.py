"""The validation report: what ``vla-data validate --json`` writes and ``build-splits`` reads back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.findings import Finding, Severity
from schemas.recorder import DEFAULT_CAMERA, InstructionSource, RecorderSettings, SourceKind
from schemas.sample import WindowSpec


class ValidateOptions(BaseModel):
    """How deep to look, and the sample geometry the short-episode warning is judged against."""

    model_config = ConfigDict(extra="forbid")

    deep: bool = Field(False, description="Also read every frame (frozen camera, undecodable chunks).")
    window: WindowSpec = Field(default_factory=WindowSpec, description="The sample geometry short episodes are judged by.")
    workers: int = Field(1, ge=1, description="Parallel processes checking files.")

    @model_validator(mode="before")
    @classmethod
    def _flat_window(cls, data: Any) -> Any:
        """Reports written before the geometry travelled whole held its fields flat (``"window": 8, "chunk": 10``)."""
        if isinstance(data, dict) and isinstance(data.get("window"), int):
            data = dict(data)
            data["window"] = {name: data.pop(name) for name in WindowSpec.model_fields if name in data}
        return data


class FileReport(BaseModel):
    """One source episode (an HDF5 file, or a ROS 2 bag): what it holds (where readable) and everything found
    about it."""

    path: str
    kind: SourceKind = SourceKind.hdf5
    topics: list[str] = Field(default_factory=list, description="Bags: the topics read, cameras first then commands.")
    start_ns: int | None = Field(None, description="Bags: the stamp of the episode's first frame (ns).")
    stop_ns: int | None = Field(None, description="Bags: the stamp of the episode's last frame (ns).")
    n_frames: int | None = None
    frame_size: tuple[int, int] | None = None  # the first camera's (H, W)
    frame_sizes: dict[str, tuple[int, int]] = Field(default_factory=dict, description="(H, W) per camera name.")
    action_min: list[float] | None = None
    action_max: list[float] | None = None
    instruction: str | None = None
    instruction_source: InstructionSource | None = None
    scenario: str | None = None
    fingerprint: str | None = Field(
        None,
        description="sha256 of the actions, each camera's frame shape and first stored frame chunk (default pass) "
        "or every stored frame chunk (deep pass); equal fingerprints mean duplicate episodes (copies).",
    )
    findings: list[Finding] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sizes_of_old_reports(self) -> FileReport:
        """Reports from before cameras hold the one camera's size only."""
        if self.frame_size is not None and not self.frame_sizes:
            self.frame_sizes = {DEFAULT_CAMERA: self.frame_size}
        return self

    @property
    def status(self) -> Severity | None:
        """The worst severity found, or None when the file is clean."""
        for severity in (Severity.error, Severity.warning, Severity.info):
            if any(f.severity == severity for f in self.findings):
                return severity
        return None

    @property
    def ok(self) -> bool:
        return self.status != Severity.error


class DatasetSummary(BaseModel):
    """Totals over the files without errors."""

    episodes: int
    frames: int
    instructions: dict[str, int]
    scenarios: dict[str, int]
    action_names: list[str]
    action_min: list[float]
    action_max: list[float]


class ValidationReport(BaseModel):
    tool_version: str
    root: str = Field(description="The folder the validated paths share; dataset-wide findings name it as their file.")
    settings: RecorderSettings
    options: ValidateOptions
    files: list[FileReport]
    dataset_findings: list[Finding] = Field(
        default_factory=list, description="Findings about the files together (e.g. a constant action channel)."
    )
    summary: DatasetSummary

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.files for f in r.findings] + list(self.dataset_findings)

    @property
    def n_errors(self) -> int:
        return sum(1 for r in self.files if not r.ok)

    @property
    def exit_code(self) -> int:
        """0 when no file has an error (warnings allowed), 1 otherwise."""
        return 1 if self.n_errors else 0
