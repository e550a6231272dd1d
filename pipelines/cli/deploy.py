"""`vla-data export`: a trained policy as ONNX graphs a robot runs without torch."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.errors import fail
from pipelines.cli.flags import EXPORT_FLAGS
from pipelines.cli.options import build_model, model_flags
from schemas.export import ExportOptions


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="The policy folder to write (must not exist; it appears whole, or not at all).")
@model_flags(ExportOptions, EXPORT_FLAGS)
def export_cmd(checkpoint: Path, out: Path, **flags: object) -> None:
    """Export a trained policy (a checkpoint, or a run: its latest) for the robot's own computer.

    Writes POLICY_DIR with two ONNX graphs of static shapes (frame.onnx: the new frame of every camera and
    the instruction -> the frame's feature, LoRA merged, the image span placed by a static concat; head.onnx:
    the last W features -> the chunk), the tokenizer as tokenizer.json and policy.json (cameras, resize,
    window, chunk, action offset, names, channels, stats, teleop levels, every file's sha256). Before
    publishing, onnxruntime runs both graphs on a few frames and the export is refused when they are
    further from PyTorch than the tolerance, naming the graph and the difference.

    On the robot: pip install "./client[onnx]" (numpy, onnxruntime, tokenizers, Pillow; no torch), then
    LocalPolicy(POLICY_DIR) has the client's reset/step, so Driver and the ROS 2 node run it as they run a
    server. `vla-data drive EPISODE --policy POLICY_DIR` drives a recorded episode through it here.

    \b
    Examples:
      vla-data export runs/tiny -o policy
      vla-data export runs/k2 -o policy-k2 --precision fp16 --max-words 48
    """
    options = build_model(ExportOptions, {k: v for k, v in flags.items() if v is not None}, "export options")
    try:
        from pipelines.export import export_policy
    except ImportError as exc:  # the onnx extra is not installed
        fail(f"export needs onnx, onnxscript and onnxruntime ({exc}): pip install 'vla-data[onnx]'")
    exported = export_policy(checkpoint, out, options, lambda line: click.echo(line, err=True))
    graphs = ", ".join(f"{name} ({(out / name).stat().st_size / 2**20:.1f} MB)" for name in exported.files)
    click.echo(f"wrote {out}: {graphs}; run it with LocalPolicy('{out}') or `vla-data drive EPISODE --policy {out}`")
