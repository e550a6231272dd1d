"""The validate job: run the checks over files and folders, and print the report for a person."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import click
import pandas as pd
from tqdm import tqdm

from schemas import Finding, RecorderSettings, Severity, SourceKind, ValidateOptions, ValidationReport
from pipelines.cli.flags import worded_hint
from vla_data.sources.formats import common_root, find_sources
from vla_data.sources.instructions import IndexCsvError
from vla_data.validation.checks import validate

_STYLE = {Severity.error: "red", Severity.warning: "yellow", Severity.info: "cyan", None: "green"}


def run_validate(paths: list[Path], settings: RecorderSettings, options: ValidateOptions) -> ValidationReport:
    """Validate the episodes under ``paths``; usage problems (nothing to check, bad CSV) are click errors."""
    files = find_sources(paths)
    if not files:
        raise click.UsageError(f"no *.h5 / *.hdf5 files or ROS 2 bags (a folder with metadata.yaml, or a .mcap "
                               f"file) under {', '.join(map(str, paths))}")
    try:
        with tqdm(total=len(files), desc="validate", unit="file", disable=None) as bar:
            return validate(files, settings, options, root=common_root(paths), progress=bar.update)
    except IndexCsvError as exc:
        raise click.UsageError(str(exc)) from exc


def _short(path: str, root: str) -> str:
    """The path as the table shows it: relative to the folder the sources share (a single bag folder is that
    folder: its own name, not '.')."""
    try:
        short = os.path.relpath(path, root)
    except ValueError:
        return path
    return Path(path).name if short == "." else short


def _clip(text: str | None, width: int = 48) -> str:
    if not text:
        return "-"
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def render_report(report: ValidationReport) -> str:
    """The report as a person reads it: files, findings grouped by code with hints, dataset summary."""
    out: list[str] = []
    root = report.root
    rows = [
        {
            "file": _short(r.path, root),
            "frames": r.n_frames if r.n_frames is not None else "-",
            "size": f"{r.frame_size[0]}x{r.frame_size[1]}" if r.frame_size else "-",
            "instruction": _clip(r.instruction),
            "from": r.instruction_source.value if r.instruction_source else "-",
            "status": (r.status.value if r.status else "ok"),
        }
        for r in report.files
    ]
    out.append(click.style(f"Episodes ({len(report.files)} files)", bold=True))
    out.append(pd.DataFrame(rows).to_string(index=False))

    grouped: dict[tuple[int, str], list[Finding]] = defaultdict(list)
    order = {Severity.error: 0, Severity.warning: 1, Severity.info: 2}
    for f in report.findings:
        grouped[(order[f.severity], f.code.value)].append(f)
    if grouped:
        out.append("")
        out.append(click.style("Findings by code", bold=True))
    for (_, code), findings in sorted(grouped.items()):
        severity = findings[0].severity
        n_files = len({f.file for f in findings})
        title = f"{severity.value:<7} {code} ({n_files} file{'s' if n_files != 1 else ''})"
        out.append(click.style(title, fg=_STYLE[severity], bold=True))
        last_hint = None
        for f in findings:
            where = ("(all episodes)" if f.file == root else _short(f.file, root)) + (f" [{f.key}]" if f.key else "")
            out.append(f"  {where}: {f.message}")
            hint = worded_hint(f)  # its fixes as the flags that give them
            if hint != last_hint:
                out.append(f"    hint: {hint}")
                last_hint = hint

    s = report.summary
    out.append("")
    out.append(click.style("Dataset (files without errors)", bold=True))
    out.append(f"  episodes {s.episodes}, frames {s.frames}")
    for title, counts in (("instructions", s.instructions), ("scenarios", s.scenarios)):
        out.append(f"  {title}:")
        out.extend(f"    {n:>5}  {text}" for text, n in counts.items())
    if s.action_min:
        out.append("  action range:")
        out.extend(
            f"    {name:<10} [{lo:+.3f}, {hi:+.3f}]" for name, lo, hi in zip(s.action_names, s.action_min, s.action_max, strict=True)
        )
    o = report.options
    out.append(
        f"  checked with: {_cameras(report.settings)}, actions `{report.settings.actions_key}`, "
        f"bound {report.settings.action_bound:g}, "
        f"window {o.window.window}, chunk {o.window.chunk}, {'deep' if o.deep else 'default'} pass"
    )
    if any(r.kind == SourceKind.rosbag2 for r in report.files):
        bag = report.settings.bag
        topics = ", ".join(f"{n} {t or '(none)'}" for n, t in report.settings.camera_topics.items())
        out.append(f"  bags: cameras {topics}, commands {bag.command_topic} ({','.join(report.settings.command_fields)}), "
                   f"{bag.stamp.value} stamps, timeout {bag.command_timeout_s:g} s"
                   + (f", at most {bag.fps:g} fps" if bag.fps else ""))
    bad = report.n_errors
    verdict = (
        click.style(f"{bad} of {len(report.files)} files have errors (exit 1)", fg="red", bold=True)
        if bad
        else click.style(f"all {len(report.files)} files usable (exit 0)", fg="green", bold=True)
    )
    out.append(verdict)
    return "\n".join(out)



def _cameras(settings: RecorderSettings) -> str:
    """``frames `images` (bgr)`` for one camera, ``cameras front <- `images` (bgr), ...`` for several."""
    if len(settings.cameras) == 1:
        return f"frames `{settings.camera.key}` ({settings.camera.color_order.value})"
    return "cameras " + ", ".join(c.describe() for c in settings.cameras)
