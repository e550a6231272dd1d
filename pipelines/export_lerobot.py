"""`vla-data export-lerobot`: a store version as a LeRobotDataset v3.0 folder (``vla_data.lerobot.writer``).

The folder is written under a temporary name beside its place and renamed into place whole; an existing folder is
refused unless it is empty or one this command wrote (its ``meta/vla_data.json`` reads as ours), which is then
replaced whole. The frame rate is ``--fps``, or the episodes' own where every one has a clock (ROS 2 bags).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from schemas.fixes import Fix
from schemas.lerobot import LeRobotExport, LeRobotExportOptions
from vla_data.common.folders import check_folder, publishing
from vla_data.common.refusal import Refusal
from vla_data.sources.lerobot import read_export
from vla_data.store.reader import DatasetStore, open_store

JOB = "export-lerobot"


class LeRobotExportError(Refusal):
    """A store that cannot be exported as asked (no frame rate known)."""


def ours(folder: Path) -> bool:
    """``folder`` is a LeRobot dataset this command wrote (its ``meta/vla_data.json`` reads as ours)."""
    return read_export(folder) is not None


def frame_rate(store: DatasetStore, options: LeRobotExportOptions) -> int:
    """``options.fps``, or the median rate of the store's episodes where every one has stamps (bags)."""
    if options.fps is not None:
        return options.fps
    records = store.records()
    stamped = [r for r in records if r.start_ns is not None and r.stop_ns is not None and r.n_frames > 1
               and r.stop_ns > r.start_ns]
    if not records or len(stamped) < len(records):
        kinds = sorted({r.source_kind.value for r in records if r not in stamped})
        raise LeRobotExportError(f"{store.location}: its {' and '.join(kinds) or 'no'} episodes carry no clock, so "
                                 "the frame rate LeRobot needs is not known", Fix({"fps": "N"}, "(the recorder's "
                                 "frames per second)"))
    rates = [(r.n_frames - 1) / ((r.stop_ns - r.start_ns) / 1e9) for r in stamped]
    return max(1, int(round(float(np.median(rates)))))


def export_lerobot(address: str, out: Path, options: LeRobotExportOptions, announce: Callable[[str], None],
                   progress: bool = True) -> LeRobotExport:
    """Write the store version ``address`` names (``STORE``, ``STORE@VERSION``, ``STORE@TAG``) to ``out``."""
    from vla_data.lerobot.writer import write_lerobot

    check_folder(out, JOB, ours)
    store = open_store(address)
    fps = frame_rate(store, options)
    if options.fps is None:
        announce(f"{fps} frames per second, from the episodes' stamps")
    total = int(store.episodes["n_frames"].sum())
    with publishing(out, JOB, announce, ours) as tmp, \
            tqdm(total=total, unit="frame", desc=JOB, disable=not progress) as bar:
        return write_lerobot(store, tmp, out.name, options, fps, bar.update)


