"""`vla-data drive`: a recorded episode driven through a policy server with the robot's own client and
executor, as the robot would, with the latency it sees. Checks a deployment (or the demo) end to end."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas import ColorOrder, RecorderSettings, ValidateOptions
from schemas.findings import Severity
from schemas.serve import DriveReport
from vla_client.client import PolicyClient
from vla_client.frames import FrameWarning
from vla_client.execution import Driver, ExecutionMode, Executor, Snap
from pipelines.predict import read_recorded
from vla_data.common.resize import to_rgb
from vla_data.sources.instructions import InstructionIndex
from vla_data.validation.checks import check_file


if TYPE_CHECKING:  # onnxruntime is the onnx extra's: imported only by drive --policy
    from vla_client.local import LocalPolicy

class TimedClient:
    """The client, timing each request (round trip on the client, and the server's own account)."""

    def __init__(self, client: PolicyClient) -> None:
        self.client, self.round_trip, self.server = client, [], []

    def step(self, frames: Any) -> np.ndarray:
        start = time.perf_counter()
        chunk, server = self.client.step_timed(frames)
        self.round_trip.append(1000 * (time.perf_counter() - start))
        self.server.append(server.get("total", float("nan")))
        return chunk


def read_frames(path: Path, settings: RecorderSettings, cameras: list[str], orders: dict[str, str]
                ) -> tuple[dict[str, np.ndarray], np.ndarray, str | None]:
    """The episode's frames for the server's cameras (one camera: the settings' one, whatever its name), its
    actions and its instruction; ValueError when it has errors or lacks a camera. Frames are sent in the colour
    order the server reads each camera's raw frames in (``orders``), as the robot's driver would."""
    report = check_file(path, settings, ValidateOptions(), InstructionIndex.for_files([path], settings.index_csv_name))
    errors = [f for f in report.findings if f.severity == Severity.error]
    if errors:
        listed = "; ".join(f"{f.code}: {f.message}" for f in errors)
        raise ValueError(f"{path}: cannot be driven ({listed}); `vla-data validate {path}` says how to fix it")
    one = len(cameras) == 1 and len(settings.cameras) == 1
    names = {cameras[0]: settings.camera.name} if one else {c: c for c in cameras}
    missing = [c for c, n in names.items() if n not in {given.name for given in settings.cameras}]
    if missing:
        raise ValueError(f"the server's policy reads camera(s) {', '.join(cameras)}; give each with --camera NAME=KEY "
                         f"(and --camera-topic NAME=TOPIC for bags) (missing {', '.join(missing)})")
    recorded = read_recorded(path, settings)
    # each camera as the robot's driver gives it: in the colour order the server reads its raw frames in (as
    # recorded where the server does not say); to_rgb is its own inverse, so it also turns RGB into BGR
    frames = {}
    for camera, name in names.items():
        have = recorded.color_orders[name]
        want = ColorOrder(orders[camera]) if camera in orders else have
        pixels = recorded.frames[name]
        frames[camera] = pixels if want == have else np.ascontiguousarray(to_rgb(to_rgb(pixels, have), want))
    return frames, recorded.actions, report.instruction


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def drive_episode(client: PolicyClient | LocalPolicy, path: Path, settings: RecorderSettings, execution: str,
                  instruction: str | None = None, deadline: float = 0.5, snap: bool = False, rate: float = 0.0
                  ) -> DriveReport:
    """Drive the episode at ``path`` through ``client``: a server's ``PolicyClient``, or an exported policy's
    ``LocalPolicy`` (``rate`` ticks per second, 0: as fast as it answers); the commands are compared with the
    recorded actions of the channels the policy predicts. The client is closed at the end."""
    mode = ExecutionMode.parse(execution)
    url = client.url if isinstance(client, PolicyClient) else str(client.folder)
    try:
        meta = client.metadata
        frames, actions, found = read_frames(path, settings, meta["cameras"], meta.get("color_orders", {}))
        instruction = instruction or found
        if not instruction:
            raise ValueError(f"{path}: no instruction in the file, a dataset_index.csv or the file name; "
                             "pass --instruction")
        with warnings.catch_warnings(record=True) as said:  # frames the server would refuse: refused here, once
            warnings.simplefilter("always", FrameWarning)
            client.check({c: f[0] for c, f in frames.items()})
        client.reset(instruction)
        timed = TimedClient(client)
        executor = Executor(mode, deadline=deadline, snap=Snap.from_metadata(meta) if snap else None)
        driver = Driver(timed, executor)
        commands = []
        n = len(actions)
        for t in range(n):
            started = time.perf_counter()
            commands.append(driver.tick({c: f[t] for c, f in frames.items()}))
            if rate > 0:
                time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
            elif driver.asynchronous:
                driver.wait()  # as fast as the server answers, without outrunning it
    finally:
        client.close()
    offset = int(meta["action_offset"])
    recorded = actions[:, meta["action_channels"]]
    rows = [(c, recorded[t + offset]) for t, c in enumerate(commands) if t + offset < n and c.size]
    mae = (np.abs(np.stack([c for c, _ in rows]) - np.stack([r for _, r in rows])).mean(0).tolist() if rows
           else [None] * len(meta["action_names"]))
    return DriveReport(url=url, episode=str(path), instruction=instruction, execution=execution,
                       action_names=meta["action_names"], steps=n, requests=len(timed.round_trip),
                       stops=executor.stops, round_trip_ms=_percentiles(timed.round_trip),
                       server_ms=_percentiles(timed.server),
                       commands=[c.tolist() for c in commands], command_mae=mae,
                       warnings=[str(w.message) for w in said if issubclass(w.category, FrameWarning)])


def render_drive(report: DriveReport) -> str:
    rt, server = report.round_trip_ms, report.server_ms
    mae = ", ".join(f"{n} {'-' if v is None else f'{v:.3f}'}" for n, v in zip(report.action_names, report.command_mae,
                                                                            strict=True))
    return (f"{report.episode}: {report.steps} ticks ({report.execution}), {report.requests} requests, "
            f"{report.stops} safety stops\n"
            f"round trip p50 {rt.get('p50', float('nan')):.1f} ms, p99 {rt.get('p99', float('nan')):.1f} ms "
            f"(server p50 {server.get('p50', float('nan')):.1f} ms); command MAE against the recorded actions: {mae}")
