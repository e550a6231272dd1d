"""Synthetic episodes in the recorder's exact format, learnable, plus one defective file per finding class.

The world: a beverage bottle (red) stands on the left or right of the robot, behind grey boxes laid out as
the file name says. The operator (a scripted keyboard teleop) strafes toward the bottle and drives forward
until it stands in front of it, then stops. What to do is visible in every frame (where the bottle is,
how big) and agrees with the instruction (which side). Speed, start distance, lateral offset and length
vary per episode. Row 0 is the all-zero ``episode_start``; frame t is grabbed after action t was sent, so
the action a policy should choose after frame t is row t+1 (DESIGN.md, Timing).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from schemas import ColorOrder, FindingCode, RecorderSettings
from schemas.recorder import CameraSource
from schemas.synthetic import SourceFormat, SyntheticConfig
from vla_data.common.files import atomic_path, write_bytes_atomic, write_text_atomic
from vla_data.synthetic.bags import BagStyle, InstructionPlace, write_bag

TELEOP_SPEED = 1.15  # every teleop value is -1.15, 0 or +1.15
LAYOUTS = ("1box_hori", "1box_vert", "2box_hori", "2box_vert")
START_DISTANCE = {"close": 4.0, "medium": 5.5, "far": 7.0}
STOP_DISTANCE = 1.2
ALIGNED = 0.25
TIME_PERIODS = ("dawn", "morning", "evening", "night")
SETTINGS = RecorderSettings()  # the collector writes the recorder defaults
# ``--cameras 2``: the collector's camera, and a side camera written RGB by another driver.
FRONT = CameraSource(name="front", key="images", color_order=ColorOrder.bgr)
SIDE = CameraSource(name="side", key="observations/side_images", color_order=ColorOrder.rgb, topic="/side/image_raw")
SIDE_SHIFT = 1 / 6  # the side camera sees the scene shifted by this share of the frame width


def camera_settings(cameras: int) -> RecorderSettings:
    """The recorder settings that read episodes written with ``SyntheticConfig.cameras``."""
    return SETTINGS if cameras == 1 else RecorderSettings(cameras=(FRONT, SIDE))


def side_view(frames: np.ndarray) -> np.ndarray:
    """The side camera's (T, H, W, 3) RGB frames: the same scene, shifted sideways (the edge column repeated)."""
    shift = max(1, int(frames.shape[2] * SIDE_SHIFT))
    return np.ascontiguousarray(np.concatenate([frames[:, :, shift:], np.repeat(frames[:, :, -1:], shift, 2)], 2))


@dataclass
class Episode:
    """One episode as the collector would write it; frames are RGB here and stored as BGR."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8, RGB
    actions: np.ndarray  # (T, 3) float32
    events: list[str]
    instruction: str | None
    attributes: dict[str, object] = field(default_factory=dict)
    side_frames: np.ndarray | None = None  # (T, H, W, 3) uint8 RGB of the side camera (``--cameras 2``)


# -- the world -------------------------------------------------------------------------------------------
def _project(lateral: float, distance: float, width: int) -> float:
    """Image column of a point ``lateral`` to the left at ``distance`` ahead (pinhole, about 67 degree view)."""
    return width / 2 - lateral / max(distance, 0.3) * width * 0.75


def _draw_box(img: np.ndarray, cx: float, bottom: float, w: float, h: float, colour: tuple[int, int, int]) -> None:
    H, W, _ = img.shape
    x0, y1 = int(round(cx - w / 2)), int(round(bottom))
    x1, y0 = max(int(round(cx + w / 2)), x0 + 1), min(int(round(bottom - h)), y1 - 1)  # at least a pixel
    x0, x1, y0, y1 = max(x0, 0), min(x1, W), max(y0, 0), min(y1, H)
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = colour


def render(
    lateral: float, distance: float, layout: str, size: tuple[int, int], brightness: float, rng: np.random.Generator, noise: int
) -> np.ndarray:
    """One RGB frame: wall, floor, the layout's boxes and the bottle, seen from the robot."""
    H, W = size
    img = np.empty((H, W, 3), np.uint8)
    horizon = H // 2
    img[:horizon] = np.array([185, 180, 165]) * brightness
    img[horizon:] = np.array([105, 95, 80]) * brightness
    boxes = [(0.0, 0.55)] if layout.startswith("1box") else [(0.6, 0.45), (-0.6, 0.65)]
    tall = layout.endswith("vert")
    for box_lateral, box_at in boxes:  # boxes stand between start and bottle, part way along
        d = distance * box_at
        scale = H / max(d, 0.3)
        bw, bh = (0.2 if tall else 0.5) * scale, (0.5 if tall else 0.2) * scale
        _draw_box(img, _project(lateral * box_at + box_lateral, d, W), horizon + scale * 0.5, bw, bh, (120, 120, 125))
    scale = H / max(distance, 0.3)
    cx = _project(lateral, distance, W)
    bottom = horizon + scale * 0.5
    _draw_box(img, cx, bottom, 0.2 * scale, 0.6 * scale, (200, 30, 35))  # bottle, seen over the boxes
    _draw_box(img, cx, bottom - 0.6 * scale, 0.1 * scale, 0.08 * scale, (240, 240, 240))  # cap
    if noise:
        block = 8
        n = rng.integers(-noise, noise + 1, (H // block + 1, W // block + 1, 1), dtype=np.int16)
        n = np.repeat(np.repeat(n, block, 0), block, 1)[:H, :W]
        img = np.clip(img.astype(np.int16) + n, 0, 255).astype(np.uint8)
    return img


def operator(lateral: float, distance: float) -> np.ndarray:
    """The scripted teleop: strafe toward the bottle (diagonally while still far), then forward, then stop."""
    lin_x = TELEOP_SPEED if distance > STOP_DISTANCE else 0.0
    lin_y = 0.0
    if abs(lateral) > ALIGNED:
        lin_y = TELEOP_SPEED if lateral > 0 else -TELEOP_SPEED  # +y is left (ROS)
    return np.array([lin_x, lin_y, 0.0], np.float32)


def simulate(rng: np.random.Generator, index: int, start: datetime, config: SyntheticConfig) -> Episode:
    side = ("left", "right")[index % 2]
    layout = LAYOUTS[(index // 2) % len(LAYOUTS)]
    pattern = str(rng.choice(["core", "variant"]))
    dist_name = str(rng.choice(list(START_DISTANCE)))
    distance = START_DISTANCE[dist_name] + rng.uniform(-0.4, 0.4)
    lateral = (1 if side == "left" else -1) * rng.uniform(1.0, 2.2)
    step = rng.uniform(0.18, 0.34)  # metres per key press: the episode's speed
    brightness = rng.uniform(0.7, 1.1)
    size = (config.height, config.width)

    frames = [render(lateral, distance, layout, size, brightness, rng, config.noise)]
    actions = [np.zeros(3, np.float32)]
    events = ["episode_start"]
    stops_left = int(rng.integers(1, 4))  # the operator ends the episode by hand a little after arriving
    while stops_left > 0 and len(frames) < 60:
        a = operator(lateral, distance)
        distance -= a[0] / TELEOP_SPEED * step
        lateral -= a[1] / TELEOP_SPEED * step
        if not a.any():
            stops_left -= 1
        actions.append(a)
        events.append("start_action" if a.any() else "stop_action")
        frames.append(render(lateral, distance, layout, size, brightness, rng, config.noise))

    when = start + timedelta(minutes=7 * index, seconds=int(rng.integers(0, 60)))
    t = len(frames)
    period = TIME_PERIODS[int(rng.integers(0, len(TIME_PERIODS)))]
    return Episode(
        name=f"episode_{when:%Y%m%d_%H%M%S}_{layout}_{side}_{pattern}_{dist_name}",
        frames=np.stack(frames),
        actions=np.stack(actions).astype(np.float32),
        events=events,
        instruction=SETTINGS.instruction_template.format(side=side),
        attributes={
            "episode_name": f"episode_{when:%Y%m%d_%H%M%S}",
            "num_frames": t,
            "action_chunk_size": 8,
            "total_duration": round(t * float(rng.uniform(0.4, 0.7)), 3),
            "obstacle_layout_type": layout,
            "time_period": period,
            "collection_datetime": when.isoformat(),
            "collection_hour": when.hour,
            "collection_minute": when.minute,
        },
    )


# -- writing ---------------------------------------------------------------------------------------------
def write_episode(path: Path, ep: Episode, frames_key: str = SETTINGS.camera.key, bgr: bool = True) -> Path:
    """Write ``ep`` as the collector does, via a temporary file renamed into place (never half-written)."""
    frames = ep.frames[..., ::-1] if bgr and ep.frames.ndim == 4 and ep.frames.shape[-1] == 3 else ep.frames
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        chunks = (1, *frames.shape[1:]) if frames.shape[0] else None
        f.create_dataset(frames_key, data=np.ascontiguousarray(frames), chunks=chunks, compression="gzip")
        if ep.side_frames is not None:
            f.create_dataset(SIDE.key, data=ep.side_frames, chunks=chunks, compression="gzip")
        f.create_dataset(SETTINGS.actions_key, data=ep.actions)
        f.create_dataset(SETTINGS.events_key, data=ep.events, dtype=h5py.string_dtype("utf-8"))
        if ep.instruction is not None:
            f.create_dataset(SETTINGS.instruction_key, data=np.array([ep.instruction.encode()], dtype="S256"))
        for k, v in ep.attributes.items():
            f.attrs[k] = v
    return path


def make_synthetic(out: Path, config: SyntheticConfig, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write ``config.episodes`` clean episodes (and the defect files) into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    start = datetime(2025, 11, 6, 9, 0, 0) + timedelta(days=int(rng.integers(0, 30)))
    written: list[Path] = []
    index_rows: list[dict[str, str]] = []
    for i in range(config.episodes):
        ep = simulate(rng, i, start, config)
        if config.cameras == 2:
            ep = replace(ep, side_frames=side_view(ep.frames))
        if rng.random() < config.no_instruction_ratio:  # older files: the instruction was added afterwards
            if rng.random() < 0.5:
                stored = ep.name if config.format == SourceFormat.rosbag2 else f"{ep.name}.h5"
                index_rows.append({"episode_path": stored, "instruction": ep.instruction or ""})
            ep = replace(ep, instruction=None)
        if rng.random() < 0.2:  # older files lack the newer attributes
            ep.attributes = {k: v for k, v in ep.attributes.items() if not k.startswith("collection_")}
        if config.format == SourceFormat.rosbag2:
            place = InstructionPlace.none if ep.instruction is None else (InstructionPlace.topic, InstructionPlace.metadata)[i // 4 % 2]
            style = replace(BagStyle.of(i, place), period_ns=int(1e9 * float(ep.attributes["total_duration"]) / len(ep.frames)))
            cameras = [ep.frames] if ep.side_frames is None else [ep.frames, ep.side_frames]
            path = write_bag(out / ep.name, cameras, ep.actions, ep.instruction, style, camera_settings(config.cameras))
        else:
            path = write_episode(out / f"{ep.name}.h5", ep)
        written.append(path)
        if progress:
            progress(1)
    if index_rows:
        with atomic_path(out / SETTINGS.index_csv_name) as tmp:
            pd.DataFrame(index_rows).to_csv(tmp, index=False)
    if config.defects:
        written += write_defects(out, written, config, rng)
    return written


# -- defects: one file per finding class, named ``..._defect_<code>.h5`` ----------------------------------------
Defect = Callable[[Path, Episode, list[Path]], Path]
"""Writes a defective variant of a clean episode at (or beside) the path; returns the path written."""


def write_defects(out: Path, clean: list[Path], config: SyntheticConfig, rng: np.random.Generator) -> list[Path]:
    start = datetime(2025, 12, 24, 10, 0, 0)
    paths = []
    for i, (code, make) in enumerate(_DEFECTS.items()):
        ep = simulate(rng, 1000 + i, start, config)
        if config.cameras == 2:
            ep = replace(ep, side_frames=side_view(ep.frames))
        paths.append(make(out / f"{ep.name}_defect_{code}.h5", ep, clean))
    return paths


def _not_hdf5(path: Path, ep: Episode, clean: list[Path]) -> Path:
    write_text_atomic(path, "episode export failed: disk full\n")
    return path


def _truncated(path: Path, ep: Episode, clean: list[Path]) -> Path:
    write_episode(path, ep)
    with open(path, "r+b") as f:  # an interrupted copy: the tail of the file is gone
        f.truncate(os.path.getsize(path) // 2)
    return path


def _no_instruction(path: Path, ep: Episode, clean: list[Path]) -> Path:
    # a v3 recovery run names no target side, and is neither in the file nor in dataset_index.csv
    stamp = "_".join(ep.name.split("_")[:3])
    return write_episode(path.with_name(f"{stamp}_v3_recovery_core_far_defect_{FindingCode.instruction_missing}.h5"),
                         replace(ep, instruction=None))


def _edited(edit: Callable[[Episode], Episode], **write: object) -> Defect:
    """A defect made by changing the episode before it is written."""
    return lambda path, ep, clean: write_episode(path, edit(ep), **write)  # type: ignore[arg-type]


def _patched(edit: Callable[[h5py.File, Path], None]) -> Defect:
    """A defect made by changing the written file in place."""

    def make(path: Path, ep: Episode, clean: list[Path]) -> Path:
        write_episode(path, ep)
        with h5py.File(path, "r+") as f:
            edit(f, path)
        return path

    return make


def _external_link(f: h5py.File, path: Path) -> None:
    f["calibration"] = h5py.ExternalLink("/robot/config/calibration.h5", "/camera_matrix")


def _external_storage(f: h5py.File, path: Path) -> None:
    raw = path.with_suffix(".depth.raw")
    write_bytes_atomic(raw, b"\x00" * 64)
    f.create_dataset("depth", shape=(16,), dtype="<f4", external=[(raw.name, 0, 64)])


def _virtual(f: h5py.File, path: Path) -> None:
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
    layout[:] = h5py.VirtualSource("/robot/logs/odometry.h5", "odom", shape=(4,))
    f.create_virtual_dataset("odometry", layout)


def _wrong_num_frames(f: h5py.File, path: Path) -> None:
    f.attrs["num_frames"] = int(f.attrs["num_frames"]) + 5


def _nan_action(ep: Episode) -> Episode:
    actions = ep.actions.copy()
    actions[len(actions) // 2, 1] = np.nan
    return replace(ep, actions=actions)


def _frozen(ep: Episode) -> Episode:
    frames = ep.frames.copy()
    frames[3:7] = frames[3]
    return replace(ep, frames=frames)


def _three_frames(ep: Episode) -> Episode:
    return replace(ep, frames=ep.frames[:3], actions=ep.actions[:3], events=ep.events[:3],
                   attributes={**ep.attributes, "num_frames": 3})


def _rgba(ep: Episode) -> Episode:
    alpha = np.full((*ep.frames.shape[:3], 1), 255, np.uint8)
    return replace(ep, frames=np.concatenate([ep.frames, alpha], axis=-1))


def _copy_of_clean(path: Path, ep: Episode, clean: list[Path]) -> Path:
    shutil.copyfile(clean[0], path)
    return path


_DEFECTS: dict[FindingCode, Defect] = {
    FindingCode.not_hdf5: _not_hdf5,
    FindingCode.corrupt_file: _truncated,
    FindingCode.dataset_missing: _edited(lambda ep: ep, frames_key="rgb"),
    FindingCode.wrong_dtype: _edited(lambda ep: replace(ep, actions=np.sign(ep.actions).astype(np.int64))),
    FindingCode.wrong_rank: _edited(lambda ep: replace(ep, actions=ep.actions[:, 0].copy())),
    FindingCode.wrong_channels: _edited(_rgba),
    FindingCode.length_mismatch: _edited(lambda ep: replace(ep, actions=ep.actions[:-2])),
    FindingCode.empty_episode: _edited(lambda ep: replace(ep, frames=ep.frames[:0], actions=ep.actions[:0], events=[])),
    FindingCode.nonfinite_action: _edited(_nan_action),
    FindingCode.instruction_missing: _no_instruction,
    FindingCode.external_link: _patched(_external_link),
    FindingCode.external_storage: _patched(_external_storage),
    FindingCode.virtual_dataset: _patched(_virtual),
    FindingCode.num_frames_mismatch: _patched(_wrong_num_frames),
    FindingCode.action_out_of_bounds: _edited(lambda ep: replace(ep, actions=ep.actions * 2.5)),
    FindingCode.short_episode: _edited(_three_frames),
    FindingCode.duplicate_episode: _copy_of_clean,
    FindingCode.frozen_camera: _edited(_frozen),
    FindingCode.frame_size_varies: _edited(lambda ep: replace(ep, frames=np.ascontiguousarray(ep.frames[:, ::2, ::2]))),
}
"""The defect file written for each finding class that one file can show. ``constant_action_channel``
(angular_z is always 0, as on the real robot) and ``instruction_fallback`` occur in the clean episodes."""

DEFECT_CODES: tuple[FindingCode, ...] = tuple(_DEFECTS)
