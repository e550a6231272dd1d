"""The recorder contract's pure parts: scenario names, sample counts, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import FindingCode, RawEpisode, RecorderSettings, Scenario, full_windows
from schemas.sample import WindowSpec


@pytest.mark.parametrize(
    "name, scenario, side",
    [
        ("episode_20251106_123136_1box_hori_left_core_medium.h5", "1box_hori_left", "left"),
        ("episode_20251106_123136_2box_vert_right_variant_far.h5", "2box_vert_right", "right"),
        ("episode_20251107_101010_v3_center_core_far.h5", "v3_center", None),
        ("episode_20251107_101010_v3_recovery.h5", "v3_recovery", None),
        ("episode_20251107_101010_v3_left_core_close_defect_x.h5", "v3_left", "left"),
    ],
)
def test_scenario_from_file_name(name: str, scenario: str, side: str | None) -> None:
    parsed = Scenario.from_file_name(name)
    assert parsed is not None and parsed.name == scenario and parsed.target_side == side


@pytest.mark.parametrize("name", ["episode_20251106_123136.h5", "left.h5", "episode_3box_hori_left.h5"])
def test_scenario_absent(name: str) -> None:
    assert Scenario.from_file_name(name) is None


@pytest.mark.parametrize("t, expected", [(18, 1), (17, 0), (3, 0), (30, 13), (0, 0)])
def test_full_windows_at_w8_k10_offset1(t: int, expected: int) -> None:
    assert full_windows(t, WindowSpec(window=8, chunk=10, action_offset=1)) == expected


def test_settings_refuse_unknown_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        RecorderSettings(frame_key="rgb")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RecorderSettings(action_bound=0)


def test_contract_reports_every_independent_violation_at_once() -> None:
    facts = {
        "path": "ep.h5",
        "keys": ["rgb", "actions"],
        "cameras": {"rgb": None},
        "actions": {"key": "actions", "shape": (5, 3), "dtype": "int32"},
        "instruction": "   ",
        "virtual_datasets": ["odom"],
    }
    episode, findings = RawEpisode.findings_for(facts, RecorderSettings())
    assert episode is None
    assert sorted(f.code for f in findings) == sorted(
        [FindingCode.virtual_dataset, FindingCode.dataset_missing, FindingCode.wrong_dtype, FindingCode.instruction_missing]
    )
    assert all(f.file == "ep.h5" and f.hint for f in findings)


def test_messages_with_braces_survive() -> None:
    facts = {"path": "ep.h5", "keys": [], "cameras": {"rgb": None}, "actions": None, "instruction": "go", "external_links": ["{x}"]}
    _, findings = RawEpisode.findings_for(facts, RecorderSettings())
    assert any("{x}" in f.message for f in findings)


def test_recorder_settings_read_back_as_written() -> None:
    """A report or settings file written with action_dim 2 reads back with the same meaning: the default bag
    command fields stay "the first action_dim", not three fields given (which action_dim 2 would refuse)."""
    from schemas import RecorderSettings
    from schemas.bags import BagSettings

    for settings in (RecorderSettings(action_dim=2),
                     RecorderSettings(action_dim=2, bag=BagSettings(command_fields=("angular.z", "linear.x")))):
        again = RecorderSettings.model_validate_json(settings.model_dump_json())
        assert again == settings and again.command_fields == settings.command_fields
    assert RecorderSettings(action_dim=2).command_fields == ("linear.x", "linear.y")
