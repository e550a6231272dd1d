"""`vla-data predict`: a ``PolicyRunner`` driven through one recorded episode (an HDF5 file or a ROS 2 bag),
frame by frame, as on the robot.

The episode is validated first (an episode with errors is refused with its findings); its instruction comes
from the file, the folder's ``dataset_index.csv`` or the file name, as for validate and build-splits. Each
camera the checkpoint reads is read from the dataset its training camera came from, unless the user names the
cameras (``--camera``, ``--frames-key``, ``--recorder-config``), in the colour order the user gave, else in the
training camera's, and turned into RGB as training frames were: the colour order belongs to the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from schemas import ColorOrder, RecorderSettings, ValidateOptions
from schemas.evaluation import PredictedStep, PredictReport
from schemas.findings import Severity
from vla_data.common.resize import to_rgb
from vla_data.sources.episode import SourceError
from vla_data.sources.formats import read_episode
from vla_data.sources.instructions import InstructionIndex
from vla_data.validation.checks import check_file
from vla_data.samples.windows import anchor_chunks
from vla_model.metrics import action_metrics
from vla_model.runtime import Policy


def episode_cameras(settings: RecorderSettings, policy: Policy) -> RecorderSettings:
    """The settings with the policy's cameras: as the user named them (flag or file), else as the checkpoint
    recorded them. Each camera's colour order is the user's where given, else its training camera's."""
    trained = {c.name: c for c in policy.cameras}
    if "cameras" not in settings.model_fields_set:
        return settings.model_copy(update={"cameras": tuple(c.camera_source for c in policy.cameras)})
    if len(settings.cameras) == 1 and len(policy.cameras) == 1:  # one camera: its name needs no saying
        given = settings.camera
        order = given.color_order if "color_order" in given.model_fields_set else trained[policy.camera_names[0]].color_order
        one = given.model_copy(update={"name": policy.camera_names[0], "color_order": order})
        return settings.model_copy(update={"cameras": (one,)})
    named = {c.name: c for c in settings.cameras}
    missing = [c for c in policy.camera_names if c not in named]
    if missing:
        raise ValueError(f"the checkpoint reads camera(s) {', '.join(policy.camera_names)}; the cameras given "
                         f"({', '.join(named)}) lack {', '.join(missing)}")
    cameras = tuple(named[c].model_copy(update={"color_order": named[c].color_order if "color_order" in
                                                named[c].model_fields_set else trained[c].color_order})
                    for c in policy.camera_names)
    return settings.model_copy(update={"cameras": cameras})


@dataclass
class Recorded:
    """One recorded episode's frames and actions as read, before any policy channel or colour choice."""

    frames: dict[str, np.ndarray]  # camera name -> (T, H, W, 3), in that camera's colour order
    color_orders: dict[str, ColorOrder]  # each camera's frames' order, as the source gives them
    actions: np.ndarray  # (T, A) float32, every recorded channel
    stamps: np.ndarray | None  # (T,) frame stamps (ns) where the source has a clock (bags); else None

    def rgb_frames(self) -> dict[str, np.ndarray]:
        return {c: to_rgb(f, self.color_orders[c]) for c, f in self.frames.items()}


def read_recorded(path: Path, settings: RecorderSettings) -> Recorded:
    """An episode that validated (a file, a bag, or BAG#k of a cut bag), read whole with ``settings``' cameras;
    ValueError where its source no longer gives it as validated."""
    try:
        episode = read_episode(path, settings)
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    frames = episode.frames()
    return Recorded({c: f.pixels for c, f in frames.items()}, {c: f.color_order for c, f in frames.items()},
                    episode.actions, episode.stamps)


def read_replay(path: Path, settings: RecorderSettings, policy: Policy) -> tuple[Recorded, np.ndarray, str | None]:
    """The episode as read, the policy's action channels (T, A) and the instruction found, or ValueError.
    ``settings`` name the policy's cameras (``episode_cameras``)."""
    options = ValidateOptions(window=policy.spec)
    report = check_file(path, settings, options, InstructionIndex.for_files([path], settings.index_csv_name))
    errors = [f for f in report.findings if f.severity == Severity.error]
    if errors:
        listed = "; ".join(f"{f.code}: {f.message}" for f in errors)
        raise ValueError(f"{path}: cannot be replayed ({listed}); `vla-data validate {path}` says how to fix it")
    recorded = read_recorded(path, settings)
    return recorded, policy_channels(recorded.actions, policy, path), report.instruction


def policy_channels(actions: np.ndarray, policy: Policy, path: Path | str) -> np.ndarray:
    """The recorded actions' channels the policy predicts, or ValueError where the recording has fewer."""
    channels = policy.meta.actions.channels
    if actions.shape[1] <= max(channels):
        raise ValueError(f"{path}: {actions.shape[1]} action channels, the checkpoint predicts channels {channels}")
    return actions[:, channels]


def predict_episode(policy: Policy, path: Path, settings: RecorderSettings, instruction: str | None = None,
                    progress: bool = True) -> PredictReport:
    settings = episode_cameras(settings, policy)
    if instruction:  # the episode needs none of its own then
        settings = settings.model_copy(update={"instruction": instruction})
    recorded, actions, found = read_replay(path, settings, policy)
    instruction = instruction or found
    if not instruction:
        raise ValueError(f"{path}: no instruction in the file, a dataset_index.csv or the file name; pass --instruction")
    # each camera's frames in the colour order the source gives them in (the runner turns them into RGB)
    frames, color_orders = recorded.frames, recorded.color_orders
    warnings = [w for c, f in frames.items() if (w := policy.aspect_warning(*f.shape[1:3]))]
    runner = policy.runner(color_orders)
    runner.reset(instruction)
    t_frames = len(actions)
    chunks = np.stack([runner.step({c: f[t] for c, f in frames.items()})
                       for t in tqdm(range(t_frames), desc="predict", unit="frame", disable=not progress)])
    true, mask = anchor_chunks(actions, np.arange(t_frames), policy.spec)
    steps = [PredictedStep(t=t, predicted=chunks[t].tolist(), recorded=true[t, 0].tolist() if mask[t, 0] else None)
             for t in range(t_frames)]
    mae = action_metrics(chunks[:, :1], true[:, :1], mask[:, :1], tolerance=np.inf, dead_band=0).mae
    return PredictReport(checkpoint=str(policy.path), episode=str(path), instruction=instruction,
                         action_names=policy.action_names, window=policy.window, chunk=policy.chunk,
                         action_offset=policy.spec.action_offset, cameras=[c.describe() for c in settings.cameras],
                         color_orders=color_orders, first_action_mae=mae, warnings=sorted(set(warnings)), steps=steps)


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
    head = (f"{report.episode}: {len(report.steps)} frames ({', '.join(report.cameras)}), instruction "
            f"{report.instruction!r}; window {report.window}, chunk {report.chunk}; first action of each chunk shown")
    return "\n".join([head, table.to_string(index=False, float_format=lambda v: f"{v:+.3f}", na_rep="-"),
                      f"first-action MAE: {mae}"])
