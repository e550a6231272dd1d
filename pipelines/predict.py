"""`vla-data predict`: a ``PolicyRunner`` driven through one recorded episode, frame by frame, as on the robot.

The episode is validated first (an episode with errors is refused with its findings); its instruction comes
from the file, the folder's ``dataset_index.csv`` or the file name, as for validate and build-splits. Its
frames are read in the colour order the user gave (``--color-order`` or ``--recorder-config``), else in the
training recorder's, and turned into RGB as training frames were: the colour order belongs to the source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from schemas import ColorOrder, RecorderSettings, ValidateOptions
from schemas.evaluation import PredictedStep, PredictReport
from schemas.findings import Severity
from vla_data.recorder import InstructionIndex, open_episode
from vla_data.validation import check_file
from vla_data.windows import anchor_chunks
from vla_model.metrics import action_metrics
from vla_model.runtime import Policy


def read_episode(path: Path, settings: RecorderSettings, policy: Policy) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Frames (T, H, W, 3), the policy's action channels (T, A) and the instruction found, or ValueError."""
    options = ValidateOptions(window=policy.spec)
    report = check_file(path, settings, options, InstructionIndex.for_files([path], settings.index_csv_name))
    errors = [f for f in report.findings if f.severity == Severity.error]
    if errors:
        listed = "; ".join(f"{f.code}: {f.message}" for f in errors)
        raise ValueError(f"{path}: cannot be replayed ({listed}); `vla-data validate {path}` says how to fix it")
    channels = policy.meta.actions.channels
    with open_episode(path) as f:
        actions = np.asarray(f[settings.actions_key][()], np.float32)
        if actions.shape[1] <= max(channels):
            raise ValueError(f"{path}: {actions.shape[1]} action channels, the checkpoint predicts channels {channels}")
        frames = np.asarray(f[settings.frames_key][()])
    return frames, actions[:, channels], report.instruction


def episode_color_order(settings: RecorderSettings, policy: Policy) -> ColorOrder:
    """The colour order the settings were given (flag or file), else the checkpoint's source's (the same camera)."""
    return settings.color_order if "color_order" in settings.model_fields_set else policy.preprocessing.source_color_order


def predict_episode(policy: Policy, path: Path, settings: RecorderSettings, instruction: str | None = None,
                    progress: bool = True) -> PredictReport:
    frames, actions, found = read_episode(path, settings, policy)
    instruction = instruction or found
    if not instruction:
        raise ValueError(f"{path}: no instruction in the file, a dataset_index.csv or the file name; pass --instruction")
    color_order = episode_color_order(settings, policy)
    aspect = policy.aspect_warning(*frames.shape[1:3])
    runner = policy.runner(color_order)
    runner.reset(instruction)
    chunks = np.stack([runner.step(frame) for frame in tqdm(frames, desc="predict", unit="frame", disable=not progress)])
    true, mask = anchor_chunks(actions, np.arange(len(frames)), policy.spec)
    steps = [PredictedStep(t=t, predicted=chunks[t].tolist(), recorded=true[t, 0].tolist() if mask[t, 0] else None)
             for t in range(len(frames))]
    mae = action_metrics(chunks[:, :1], true[:, :1], mask[:, :1], tolerance=np.inf, dead_band=0).mae
    return PredictReport(checkpoint=str(policy.path), episode=str(path), instruction=instruction,
                         action_names=policy.action_names, window=policy.window, chunk=policy.chunk,
                         action_offset=policy.spec.action_offset, color_order=color_order, first_action_mae=mae,
                         warnings=[aspect] if aspect else [], steps=steps)


def render_predictions(report: PredictReport) -> str:
    """Per frame: the predicted first action beside the recorded one, per channel."""
    names = report.action_names
    rows = []
    for s in report.steps:
        recorded = s.recorded if s.recorded is not None else [np.nan] * len(names)  # shown as "-"
        rows.append([s.t, *s.predicted[0], *recorded])
    columns = pd.MultiIndex.from_tuples([("", "frame")] + [("predicted", n) for n in names]
                                        + [(f"recorded (t+{report.action_offset})", n) for n in names])
    table = pd.DataFrame(rows, columns=columns)
    mae = ", ".join(f"{n} {'-' if v is None else f'{v:.3f}'}" for n, v in zip(names, report.first_action_mae, strict=True))
    head = (f"{report.episode}: {len(report.steps)} frames ({report.color_order.value}), instruction "
            f"{report.instruction!r}; window {report.window}, chunk {report.chunk}; first action of each chunk shown")
    return "\n".join([head, table.to_string(index=False, float_format=lambda v: f"{v:+.3f}", na_rep="-"),
                      f"first-action MAE: {mae}"])
