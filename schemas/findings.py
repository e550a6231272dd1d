"""Findings: what validation says about a recorder episode, with a stable code, a severity and a hint.

A hint names no CLI flag: where a setting fixes the problem, the finding carries it as a ``Fix`` (the one
definition refusals use too), and each front end words it: ``worded_hint`` as settings for the Python API, the
CLI's report as flags (``pipelines.cli.flags``); the JSON report carries the settings themselves.

The code is the contract other tools key on (CI gates, dashboards, ``--json`` consumers); its severity is
fixed here, once, and never chosen at the place that raises it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field

from schemas.fixes import Fix, as_setting, with_fixes


class Severity(StrEnum):
    error = "error"
    warning = "warning"
    info = "info"


class FindingCode(StrEnum):
    # errors: the episode cannot be used as it is
    not_hdf5 = "not_hdf5"
    corrupt_file = "corrupt_file"
    dataset_missing = "dataset_missing"
    wrong_dtype = "wrong_dtype"
    wrong_rank = "wrong_rank"
    wrong_channels = "wrong_channels"
    length_mismatch = "length_mismatch"
    empty_episode = "empty_episode"
    nonfinite_action = "nonfinite_action"
    instruction_missing = "instruction_missing"
    external_link = "external_link"
    external_storage = "external_storage"
    virtual_dataset = "virtual_dataset"
    topic_missing = "topic_missing"  # ROS 2 bags: a camera, command or events topic the bag lacks
    unsupported_message = "unsupported_message"  # a topic's type, an image encoding or format vla-data cannot read
    no_commands = "no_commands"  # the command topic has no message in the episode: every action would be zero
    stamps_out_of_order = "stamps_out_of_order"  # a topic's stamps go backwards or repeat: no frame order to align
    # warnings: usable, but probably not what was meant
    num_frames_mismatch = "num_frames_mismatch"
    action_out_of_bounds = "action_out_of_bounds"
    constant_action_channel = "constant_action_channel"
    short_episode = "short_episode"
    duplicate_episode = "duplicate_episode"
    frozen_camera = "frozen_camera"
    frame_size_varies = "frame_size_varies"
    dropped_frames = "dropped_frames"  # gaps of more than 2 frame periods in a camera topic
    camera_rates_differ = "camera_rates_differ"  # cameras of one bag at different frame rates
    timestamps_off_rate = "timestamps_off_rate"  # LeRobot: a frame's timestamp is not frame_index / fps
    # info: worth knowing
    instruction_fallback = "instruction_fallback"


_WARNINGS = {
    FindingCode.num_frames_mismatch,
    FindingCode.action_out_of_bounds,
    FindingCode.constant_action_channel,
    FindingCode.short_episode,
    FindingCode.duplicate_episode,
    FindingCode.frozen_camera,
    FindingCode.frame_size_varies,
    FindingCode.dropped_frames,
    FindingCode.camera_rates_differ,
    FindingCode.timestamps_off_rate,
}
_INFOS = {FindingCode.instruction_fallback}

SEVERITY: dict[FindingCode, Severity] = {
    code: Severity.warning if code in _WARNINGS else Severity.info if code in _INFOS else Severity.error
    for code in FindingCode
}


class Finding(BaseModel):
    """One thing wrong (or worth knowing) about one file."""

    model_config = ConfigDict(frozen=True)

    code: FindingCode
    file: str
    key: str | None = None
    message: str
    hint: str = Field(description="What to do, in words that name no flag (empty where the fixes say it all).")
    fixes: tuple[Fix, ...] = Field((), description="Settings that resolve it, each another way out after the hint.")

    @classmethod
    def of(cls, code: FindingCode, file: object, key: str | None, message: str, hint: str, *fixes: Fix) -> Finding:
        """A finding about ``file`` (a path or its text)."""
        return cls(code=code, file=str(file), key=key, message=message, hint=hint, fixes=fixes)

    def worded_hint(self, word: Callable[[Fix], str] = as_setting) -> str:
        """The hint with each fix worded by ``word`` (the CLI passes its flag wording): ``hint, or fix``; a
        hint that ends in a colon leads into its fixes (``if the stamps are wrong: fix``)."""
        return with_fixes(self.hint, self.fixes, word, " " if self.hint.endswith(":") else ", or ")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def severity(self) -> Severity:
        return SEVERITY[self.code]
