"""The recorder contract (``schemas.recorder.RawEpisode``) on one episode's facts, as every format's rules apply it."""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas import FileReport, RawEpisode, RecorderSettings, ValidateOptions


def apply_contract(report: FileReport, facts: dict[str, Any], actions: np.ndarray, settings: RecorderSettings,
                   options: ValidateOptions) -> RawEpisode | None:
    """Add the contract's errors to ``report``; for a valid episode also what the report shows of it (frames,
    sizes, the action range) and the contract's warnings. The episode, or None where it is not valid."""
    raw, errors = RawEpisode.findings_for(facts, settings)
    report.findings.extend(errors)
    if raw is None:
        return None
    report.n_frames, report.frame_size, report.frame_sizes = raw.n_frames, raw.frame_size, raw.frame_sizes
    if actions.size:
        report.action_min = actions.min(axis=0).astype(float).tolist()
        report.action_max = actions.max(axis=0).astype(float).tolist()
    report.findings.extend(raw.warnings(settings, options.window))
    return raw
