"""The lower layers name no CLI flag in a message: vla_data/, vla_model/ and schemas/ say which *setting* fixes a
problem (a ``Fix`` of a refusal or a finding), and the CLI words it as the flag. Docstrings and comments are
documentation and may name flags; every other string literal may not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pipelines.validate import render_report
from pipelines.cli.flags import worded_hint
from schemas import Finding, FindingCode, ValidationReport
from schemas.fixes import Fix

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _text(node: ast.AST) -> str | None:
    """A string literal's text (an f-string's literal parts), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return None


def flags_named(path: Path) -> list[str]:
    """``file:line: --flag`` for each string literal of ``path`` that names a CLI flag, docstrings (and any other
    string that stands alone as a statement) aside."""
    tree = ast.parse(path.read_text(), str(path))
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}  # read with their f-string
    return [f"{path}:{node.lineno}: {', '.join(FLAG.findall(text))}" for node in ast.walk(tree)
            if id(node) not in docs and id(node) not in parts and (text := _text(node)) and FLAG.search(text)]


def test_no_lower_layer_message_names_a_flag() -> None:
    found = [hit for folder in ("vla_data", "vla_model", "schemas") for path in sorted((ROOT / folder).rglob("*.py"))
             for hit in flags_named(path)]
    assert not found, "name the setting (a Fix) instead, and let the CLI word it as its flag:\n" + "\n".join(found)


def test_the_scan_finds_a_planted_flag_and_spares_docstrings_and_comments(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text('"""Module doc: `vla-data validate --deep`."""\n'
                       "def f(store):\n"
                       '    """Function doc naming --overwrite."""\n'
                       "    # a comment naming --verify\n"
                       '    raise ValueError(f"{store} is busy; pass " "--no-wait")\n'
                       'X = ("a dash-word x--y", "--3", "- -flag")\n'
                       'HINT = f"raise --action-bound to {2}"\n')
    assert sorted(flags_named(planted)) == [f"{planted}:5: --no-wait", f"{planted}:7: --action-bound"]


def test_a_findings_fix_is_flags_in_the_report_and_the_setting_in_json() -> None:
    finding = Finding.of(FindingCode.dataset_missing, "/raw/ep.h5", "images", "no dataset `images`; found `rgb`",
                         "rename `rgb` to `images`", Fix({"camera.key": "rgb", "camera.color_order": "rgb"}))
    several = Finding.of(FindingCode.dataset_missing, "/raw/ep.h5", "side", "camera side: no dataset `side`", "",
                         Fix({"cameras[side].key": "KEY"}, "with the name this recorder uses"))
    assert finding.worded_hint() == "rename `rgb` to `images`, or set camera.key=rgb, camera.color_order=rgb"
    assert worded_hint(finding) == "rename `rgb` to `images`, or pass --frames-key rgb --color-order rgb"
    assert worded_hint(several) == "pass --camera side=KEY with the name this recorder uses"
    report = ValidationReport.model_validate({
        "tool_version": "0", "root": "/raw", "files": [], "dataset_findings": [finding.model_dump()], "settings": {},
        "options": {}, "summary": {"episodes": 0, "frames": 0, "instructions": {}, "scenarios": {},
                                   "action_names": [], "action_min": [], "action_max": []}})
    assert "hint: rename `rgb` to `images`, or pass --frames-key rgb --color-order rgb" in render_report(report)
    dumped = report.model_dump(mode="json")["dataset_findings"][0]
    assert dumped["hint"] == "rename `rgb` to `images`" and "--" not in dumped["hint"]
    assert dumped["fixes"] == [{"settings": {"camera.key": "rgb", "camera.color_order": "rgb"}, "effect": "",
                                "command": ""}]
    assert ValidationReport.model_validate_json(report.model_dump_json()).findings[0].fixes == finding.fixes
