"""Whatever a file holds, validate answers with a report (exit 0 or 1), never a traceback."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import main
from schemas import FileReport, RecorderSettings, Severity, ValidateOptions
from vla_data.sources.instructions import InstructionIndex
from vla_data.validation.checks import check_file

KEYS = ["images", "actions", "language_instruction", "action_event_types"]
DTYPES = ["uint8", "int64", "float16", "float32", "float64", "bool", "S8"]


def _flip_bytes(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 64), label="n_flips")):
        i = data.draw(st.integers(0, len(raw) - 1), label="offset")
        raw[i] = data.draw(st.integers(0, 255), label="byte")
    path.write_bytes(bytes(raw))


def _edit(path: Path, data: st.DataObject) -> None:
    with h5py.File(path, "r+") as f:
        for _ in range(data.draw(st.integers(1, 3), label="n_edits")):
            key = data.draw(st.sampled_from(KEYS), label="key")
            kind = data.draw(st.sampled_from(["drop", "reshape", "link", "attr"]), label="edit")
            if kind == "drop" and key in f:
                del f[key]
            elif kind == "reshape":
                if key in f:
                    del f[key]
                shape = tuple(data.draw(st.lists(st.integers(0, 6), min_size=0, max_size=5), label="shape"))
                dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
                f.create_dataset(key, data=np.zeros(shape, dtype=dtype))
            elif kind == "link":
                if key in f:
                    del f[key]
                link = data.draw(st.sampled_from(["external", "soft", "dangling", "group"]), label="link")
                if link == "external":
                    f[key] = h5py.ExternalLink("elsewhere.h5", "/x")
                elif link == "soft":
                    f[key] = h5py.SoftLink("/action_event_types" if key != "action_event_types" else "/actions")
                elif link == "dangling":
                    f[key] = h5py.SoftLink("/nowhere")
                else:
                    f.create_group(key)["inner"] = h5py.SoftLink("/")
            else:
                value = data.draw(st.sampled_from([-3, 1e9, "many", np.nan]), label="num_frames")
                f.attrs["num_frames"] = value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_always_give_a_report(clean_dir: Path, data: st.DataObject) -> None:
    sources = sorted(clean_dir.glob("*.h5"))
    source = data.draw(st.sampled_from(sources), label="source")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(shutil.copy(source, tmp))
        if data.draw(st.booleans(), label="corrupt bytes"):
            _flip_bytes(path, data)
        else:
            _edit(path, data)
        deep = data.draw(st.booleans(), label="deep")
        report = check_file(path, RecorderSettings(), ValidateOptions(deep=deep), InstructionIndex())
        assert isinstance(report, FileReport)
        has_error = any(f.severity == Severity.error for f in report.findings)
        if report.ok:  # a usable file has the facts later stages need
            assert report.n_frames and report.frame_size and report.instruction and report.fingerprint
        result = CliRunner().invoke(main, ["validate", str(path)] + (["--deep"] if deep else []))
        assert result.exit_code == (1 if has_error else 0), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
