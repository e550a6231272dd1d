"""Pydantic contracts for every file format and config vla-data reads or writes. No I/O beyond (de)serialising."""

from schemas.findings import SEVERITY, Finding, FindingCode, Severity
from schemas.recorder import (
    DEFAULT_ACTION_NAMES,
    ArrayHeader,
    ColorOrder,
    InstructionSource,
    RawEpisode,
    RecorderSettings,
    Scenario,
    SourceKind,
    default_action_names,
    full_windows,
)
from schemas.validation import DatasetSummary, FileReport, ValidateOptions, ValidationReport

__all__ = [
    "DEFAULT_ACTION_NAMES",
    "SEVERITY",
    "ArrayHeader",
    "ColorOrder",
    "DatasetSummary",
    "FileReport",
    "Finding",
    "FindingCode",
    "InstructionSource",
    "RawEpisode",
    "RecorderSettings",
    "Scenario",
    "Severity",
    "SourceKind",
    "ValidateOptions",
    "ValidationReport",
    "default_action_names",
    "full_windows",
]
