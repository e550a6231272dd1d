"""`vla-data validate` as a user runs it: exit codes, the table, JSON, settings, and hands off the inputs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import zarr
from click.testing import CliRunner

from conftest import Start, segment_dir
from pipelines.cli import main
from schemas import FindingCode, ValidationReport
from schemas.sample import WindowSpec
from vla_data.synthetic.episodes import DEFECT_CODES


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.iterdir()
        if p.is_file()
    }


def test_clean_folder_exits_0(clean_dir: Path) -> None:
    code, out = run("validate", str(clean_dir))
    assert code == 0, out
    assert "all 8 files usable (exit 0)" in out
    assert "constant_action_channel" in out and "angular_z" in out


def test_defects_exit_1_and_list_every_defect_file_with_code_and_hint(defect_dir: Path) -> None:
    code, out = run("validate", str(defect_dir), "--deep")
    assert code == 1
    assert "Traceback" not in out
    for defect in DEFECT_CODES:
        (path,) = defect_dir.glob(f"*_defect_{defect.value}.h5")
        assert path.name in out
        # the file is listed under its code's heading (indented lines up to the next heading), with a hint
        lines = out.split(f" {defect.value} (", 1)[1].splitlines()[1:]
        section = [line for line in lines[: next(i for i, x in enumerate(lines) if not x.startswith(" "))]]
        assert any(path.name in line for line in section)
        assert section[1].strip().startswith("hint:")


def test_json_report_round_trips(defect_dir: Path, tmp_path: Path, umask_022: int) -> None:
    target = tmp_path / "report.json"
    code, _ = run("validate", str(defect_dir), "--json", str(target))
    assert stat.S_IMODE(target.stat().st_mode) == umask_022  # readable by others, as a plain open() would make it
    assert code == 1
    report = ValidationReport.model_validate_json(target.read_text())
    assert report.model_dump() == ValidationReport.model_validate(json.loads(target.read_text())).model_dump()
    assert {f.code for f in report.findings} >= set(DEFECT_CODES) - {FindingCode.frozen_camera}
    assert report.exit_code == 1
    again = ValidationReport.model_validate_json(report.model_dump_json())
    assert again == report


def test_json_to_stdout_is_only_json(clean_dir: Path) -> None:
    code, out = run("validate", str(clean_dir), "--json", "-")
    assert code == 0
    assert ValidationReport.model_validate_json(out).summary.episodes == 8


def test_workers_give_the_same_report(defect_dir: Path) -> None:
    one = run("validate", str(defect_dir), "--json", "-", "--deep")[1]
    two = run("validate", str(defect_dir), "--json", "-", "--deep", "--workers", "2")[1]
    a, b = ValidationReport.model_validate_json(one), ValidationReport.model_validate_json(two)
    assert (a.options.workers, b.options.workers) == (1, 2)
    assert a.model_dump(exclude={"options"}) == b.model_dump(exclude={"options"})


def test_the_window_flags_reach_the_report_whole_and_old_reports_still_read(clean_dir: Path) -> None:
    out = run("validate", str(clean_dir), "--json", "-", "--window", "3", "--chunk", "2", "--action-offset", "0")[1]
    report = ValidationReport.model_validate_json(out)
    assert report.options.window == WindowSpec(window=3, chunk=2, action_offset=0)  # stride: WindowSpec's default
    assert json.loads(out)["options"]["window"] == WindowSpec(window=3, chunk=2, action_offset=0).model_dump()
    old = json.loads(out)  # a report written when window, chunk and action_offset sat flat in the options
    old["options"] = {"deep": False, "window": 3, "chunk": 2, "action_offset": 0, "workers": 1}
    assert ValidationReport.model_validate(old).options == report.options


def test_inputs_are_never_touched(defect_dir: Path) -> None:
    before = _snapshot(defect_dir)
    run("validate", str(defect_dir), "--deep", "--workers", "2")
    assert _snapshot(defect_dir) == before


def test_validating_while_the_recorder_holds_the_file(clean_dir: Path, tmp_path: Path, start: Start) -> None:
    """The collector (another process) holds the file open for writing, with the HDF5 lock taken."""
    episode = shutil.copy(sorted(clean_dir.glob("*.h5"))[0], tmp_path)
    holder = start(
        [sys.executable, "-c", "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); print('open', flush=True); "
         "sys.stdin.read()", str(episode)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        code, out = run("validate", str(episode))
    finally:
        holder.communicate("")
    assert code == 0, out


@pytest.mark.parametrize(
    "args, message",
    [
        (["validate", "/no/such/path"], "does not exist"),
        (["validate"], "Missing argument"),
        (["validate", ".", "--window", "0"], "0 is not in the range"),
        (["validate", ".", "--color-order", "gbr"], "'gbr' is not one of"),
        (["validate", ".", "--action-bound", "-1"], "action_bound"),
        (["validate", ".", "--json", "out.h5"], "looks like an episode file"),
        (["make-synthetic", "x", "--image-size", "720by1280"], "is not HxW"),
        (["make-synthetic", "x", "--episodes", "1", "--defects"], "pass --episodes 2 or more"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    os.chdir(tmp_path)
    code, out = run(*args)
    assert code == 2
    assert message in out


def test_folder_without_episodes_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no episodes here")
    code, out = run("validate", str(tmp_path))
    assert code == 2 and "no *.h5 / *.hdf5 files" in out


def test_frames_key_flag_and_config_file(defect_dir: Path, tmp_path: Path) -> None:
    (renamed,) = defect_dir.glob(f"*_defect_{FindingCode.dataset_missing.value}.h5")
    code, out = run("validate", str(renamed))
    assert code == 1 and "dataset_missing" in out
    assert run("validate", str(renamed), "--frames-key", "rgb")[0] == 0
    config = tmp_path / "recorder.yaml"
    config.write_text("frames_key: rgb\naction_bound: 2.0\n")
    report = ValidationReport.model_validate_json(
        run("validate", str(renamed), "--recorder-config", str(config), "--json", "-")[1]
    )
    assert report.exit_code == 0
    assert report.settings.camera.key == "rgb" and report.settings.action_bound == 2.0
    # a flag overrides the file
    report = ValidationReport.model_validate_json(
        run("validate", str(renamed), "--recorder-config", str(config), "--action-bound", "3", "--json", "-")[1]
    )
    assert report.settings.action_bound == 3.0


@pytest.mark.parametrize("text", ["frames_key: [unclosed", "- a list", "frame_key: rgb"])
def test_bad_config_file_is_a_usage_error(text: str, tmp_path: Path, clean_dir: Path) -> None:
    config = tmp_path / "recorder.yaml"
    config.write_text(text)
    code, out = run("validate", str(clean_dir), "--recorder-config", str(config))
    assert code == 2 and "recorder" in out


def test_bad_index_csv_is_a_usage_error(clean_dir: Path, tmp_path: Path) -> None:
    shutil.copy(sorted(clean_dir.glob("*.h5"))[0], tmp_path)
    (tmp_path / "dataset_index.csv").write_text("path,text\na.h5,go left\n")
    code, out = run("validate", str(tmp_path))
    assert code == 2 and "missing column(s) episode_path, instruction" in out


def test_help_explains(clean_dir: Path) -> None:
    code, out = run("validate", "--help")
    assert code == 0 and "Exit status" in out and "--deep" in out and "--frames-key" in out


def test_the_hint_for_the_newer_layout_names_its_colour_order_and_following_it_keeps_red_red(
        clean_dir: Path, tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    newer.mkdir()
    for old in sorted(clean_dir.glob("*.h5")):  # the newer recorder: RGB frames under observations/images
        with h5py.File(old, "r") as src, h5py.File(newer / old.name, "w") as dst:
            for key in src:
                if key != "images":
                    src.copy(key, dst)
            dst.attrs.update(src.attrs)
            dst.create_dataset("observations/images", data=src["images"][()][..., ::-1], chunks=True)
    shutil.copy(clean_dir / "dataset_index.csv", newer)
    report = ValidationReport.model_validate_json(run("validate", str(newer), "--json", "-")[1])
    fixes = [f.fixes for f in report.findings if f.code == FindingCode.dataset_missing]  # the JSON names settings
    assert fixes and all(fix[0].settings == {"camera.key": "observations/images", "camera.color_order": "rgb"}
                         for fix in fixes)
    said = run("validate", str(newer))[1]  # the report words them as flags
    assert "--frames-key observations/images --color-order rgb" in said
    out = tmp_path / "ds.zarr"
    code, text = run("build-splits", str(newer), "-o", str(out), "--image-size", "16",
                     "--frames-key", "observations/images", "--color-order", "rgb")
    assert code == 0, text
    rgb = zarr.open_group(segment_dir(out), mode="r")["data/rgb"][:].astype(int)
    assert ((rgb[..., 0] > 150) & (rgb[..., 2] < 80)).any()  # the bottle is red, not blue
    assert not ((rgb[..., 2] > 150) & (rgb[..., 0] < 80)).any()
