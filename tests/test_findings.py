"""Every finding code: the defective file is built, validated, and the code, severity and file asserted."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from pipelines.cli.flags import worded_hint
from vla_data.build.plan import select_channels
from schemas import SEVERITY, FileReport, FindingCode, RecorderSettings, Severity, ValidateOptions, ValidationReport
from schemas.store import BuildOptions, DroppedChannel
from test_bags import BAG_CODES  # the findings only a ROS 2 bag can have, each tested there
from test_lerobot import LEROBOT_CODES  # the findings only a LeRobot dataset can have, each tested there
from vla_data.sources.formats import find_sources
from vla_data.synthetic.episodes import DEFECT_CODES
from vla_data.validation.checks import channel_range, validate

DEEP_ONLY = {FindingCode.frozen_camera}
ALSO_IN_CLEAN = {FindingCode.short_episode}  # the operator ends some clean episodes early too
EXPECTED_SEVERITY = {
    **{code: Severity.error for code in FindingCode},
    **{
        code: Severity.warning
        for code in (
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
        )
    },
    FindingCode.instruction_fallback: Severity.info,
}


def _report(folder: Path, deep: bool) -> ValidationReport:
    return validate(find_sources([folder]), RecorderSettings(), ValidateOptions(deep=deep), root=str(folder))


@pytest.fixture(scope="module")
def reports(defect_dir: Path) -> dict[bool, ValidationReport]:
    return {deep: _report(defect_dir, deep) for deep in (False, True)}


def _defect_file(folder: Path, code: FindingCode) -> str:
    (path,) = folder.glob(f"*_defect_{code.value}.h5")
    return str(path)


@pytest.mark.parametrize("code", list(DEFECT_CODES), ids=str)
def test_defect_file_gets_its_code(code: FindingCode, defect_dir: Path, reports: dict[bool, ValidationReport]) -> None:
    report = reports[code in DEEP_ONLY]
    wanted = _defect_file(defect_dir, code)
    hits = [f for f in report.findings if f.code == code]
    files = [f.file for f in hits]
    if code in ALSO_IN_CLEAN:
        assert wanted in files
        hits = [f for f in hits if f.file == wanted]
    else:
        assert files == [wanted], f"{code} should be found in exactly {wanted}"
    assert hits[0].severity == EXPECTED_SEVERITY[code]
    assert hits[0].hint and hits[0].message
    # a defect file has no error other than its own (warnings of its short length aside)
    others = {f.code for f in report.findings if f.file == wanted and f.severity == Severity.error}
    assert others <= {code}


def test_every_code_has_a_test() -> None:
    covered = set(DEFECT_CODES) | BAG_CODES | LEROBOT_CODES | {FindingCode.constant_action_channel,
                                                                FindingCode.instruction_fallback}
    assert covered == set(FindingCode)
    assert SEVERITY == EXPECTED_SEVERITY


def test_constant_channel_is_a_dataset_finding(defect_dir: Path, reports: dict[bool, ValidationReport]) -> None:
    (finding,) = reports[False].dataset_findings
    assert finding.code == FindingCode.constant_action_channel
    assert finding.severity == Severity.warning
    assert finding.file == str(defect_dir)
    assert "angular_z" in finding.message


def test_channel_range_spans_every_report_that_holds_one() -> None:
    reports = [FileReport(path="a", action_min=[-1.0, 0.0, 0.0], action_max=[1.0, 0.0, 0.0]),
               FileReport(path="b"),  # unreadable: no range
               FileReport(path="c", action_min=[0.0, -2.0, 0.0], action_max=[0.5, 0.25, 0.0])]
    assert channel_range(reports) == ([-1.0, -2.0, 0.0], [1.0, 0.25, 0.0])
    assert channel_range(reports[1:2]) == ([], [])


def test_findings_summary_and_build_agree_on_the_sources_channel_range(reports: dict[bool, ValidationReport]) -> None:
    report = reports[False]
    ok = [r for r in report.files if r.ok]
    summary = report.summary
    assert summary.action_min == [min(r.action_min[c] for r in ok if r.action_min) for c in range(3)]
    assert summary.action_max == [max(r.action_max[c] for r in ok if r.action_max) for c in range(3)]
    assert summary.action_min[0] < summary.action_max[0] and summary.action_min[2] == summary.action_max[2] == 0
    (finding,) = report.dataset_findings
    assert "action channel 2 (angular_z) is 0 in every episode" in finding.message
    assert select_channels(ok, BuildOptions(), 3).dropped == [DroppedChannel(channel=2, name="angular_z", value=0.0)]


def test_instruction_fallback_names_its_source(clean_dir: Path) -> None:
    report = _report(clean_dir, deep=False)
    sources = {Path(r.path).name: r.instruction_source.value for r in report.files}
    assert set(sources.values()) == {"file", "csv", "file_name"}
    fallbacks = {Path(f.file).name for f in report.findings if f.code == FindingCode.instruction_fallback}
    assert fallbacks == {name for name, source in sources.items() if source != "file"}
    assert all(f.severity == Severity.info for f in report.findings if f.code == FindingCode.instruction_fallback)


def test_frozen_camera_needs_the_deep_pass(reports: dict[bool, ValidationReport]) -> None:
    assert not [f for f in reports[False].findings if f.code == FindingCode.frozen_camera]


def test_missing_dataset_suggests_the_name_found(defect_dir: Path, reports: dict[bool, ValidationReport]) -> None:
    (finding,) = [f for f in reports[False].findings if f.code == FindingCode.dataset_missing]
    assert "found `rgb`; the recorder writes `images`" in finding.message
    assert finding.fixes[0].settings["camera.key"] == "rgb" and "--" not in finding.hint  # the setting, not the flag
    assert "--frames-key rgb" in worded_hint(finding)  # the CLI's wording of it


def test_short_episode_says_how_many_samples(defect_dir: Path, reports: dict[bool, ValidationReport]) -> None:
    wanted = _defect_file(defect_dir, FindingCode.short_episode)
    (finding,) = [f for f in reports[False].findings if f.code == FindingCode.short_episode and f.file == wanted]
    assert "3 frames give 3 samples" in finding.message and "needs 18 frames" in finding.message


def test_duplicate_names_the_original(defect_dir: Path, reports: dict[bool, ValidationReport]) -> None:
    for report in reports.values():  # the default pass and the deep pass both find the copy
        (finding,) = [f for f in report.findings if f.code == FindingCode.duplicate_episode]
        assert "_defect_" not in finding.message.split("same content as ")[1]


def test_clean_folder_has_no_errors(clean_dir: Path) -> None:
    for deep in (False, True):
        report = _report(clean_dir, deep)
        assert report.exit_code == 0
        assert report.summary.episodes == 8
        assert not [f for f in report.findings if f.severity == Severity.error]
        assert not [f for f in report.findings if f.code in (FindingCode.frozen_camera, FindingCode.duplicate_episode)]


def test_damaged_frame_chunk_is_found_by_the_deep_pass_only(clean_dir: Path, tmp_path: Path) -> None:
    source = sorted(clean_dir.glob("*.h5"))[0]
    path = tmp_path / source.name
    path.write_bytes(source.read_bytes())
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(1)  # frame 1's compressed chunk
    raw = bytearray(path.read_bytes())
    middle = info.byte_offset + info.size // 2
    raw[middle : middle + 8] = bytes(255 - b for b in raw[middle : middle + 8])
    path.write_bytes(bytes(raw))
    assert _report(tmp_path, deep=False).exit_code == 0
    deep = _report(tmp_path, deep=True)
    (finding,) = [f for f in deep.findings if f.severity == Severity.error]
    assert (finding.code, finding.key, finding.file) == (FindingCode.corrupt_file, "images", str(path))
