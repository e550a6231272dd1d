"""The synthetic recorder writes exactly what the real collector writes, and its episodes are learnable."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from schemas import Scenario
from schemas.synthetic import SyntheticConfig
from vla_data.synthetic.episodes import TELEOP_SPEED, make_synthetic


def _episodes(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.h5") if "_defect_" not in p.name)


def test_recorder_layout_dtypes_and_compression(clean_dir: Path) -> None:
    for path in _episodes(clean_dir):
        with h5py.File(path, "r") as f:
            images, actions = f["images"], f["actions"]
            t = images.shape[0]
            assert images.dtype == np.uint8 and images.shape[1:] == (24, 40, 3)
            assert images.compression == "gzip"
            assert actions.dtype == np.float32 and actions.shape == (t, 3)
            events = [e.decode() for e in f["action_event_types"][()]]
            assert events[0] == "episode_start" and set(events[1:]) <= {"start_action", "stop_action"}
            assert f.attrs["num_frames"] == t and f.attrs["action_chunk_size"] == 8
            if "language_instruction" in f:
                assert f["language_instruction"].dtype == np.dtype("S256")
                assert f["language_instruction"].shape == (1,)


def test_actions_are_keyboard_teleop_values(clean_dir: Path) -> None:
    for path in _episodes(clean_dir):
        with h5py.File(path, "r") as f:
            a = f["actions"][()]
        assert np.all(a[0] == 0), "row 0 is the all-zero episode_start"
        assert np.isin(a, np.float32([-1.15, 0.0, 1.15])).all()
        assert np.all(a[:, 2] == 0), "the teleop operator never rotates"


def test_file_names_carry_the_scenario_and_lengths_vary(clean_dir: Path) -> None:
    lengths = set()
    for path in _episodes(clean_dir):
        scenario = Scenario.from_file_name(path.name)
        assert scenario is not None and scenario.target_side in ("left", "right")
        with h5py.File(path, "r") as f:
            lengths.add(f["images"].shape[0])
    assert len(lengths) >= 3


def test_some_files_lack_the_instruction_and_the_csv_covers_some(tmp_path: Path) -> None:
    make_synthetic(tmp_path, SyntheticConfig(episodes=20, seed=1, height=16, width=24))
    missing = []
    for path in _episodes(tmp_path):
        with h5py.File(path, "r") as f:
            if "language_instruction" not in f:
                missing.append(path.name)
    assert 0 < len(missing) < 20
    index = pd.read_csv(tmp_path / "dataset_index.csv")
    assert set(index["episode_path"]) < set(missing)


def test_frames_are_bgr_and_show_where_to_go(clean_dir: Path) -> None:
    """The red bottle is in the BGR image's last channel, on the instruction's side, and the operator
    strafes toward it: what to do is visible in the frame and agrees with the instruction."""
    for path in _episodes(clean_dir):
        side = Scenario.from_file_name(path.name).target_side
        with h5py.File(path, "r") as f:
            frame0 = f["images"][0].astype(int)
            actions = f["actions"][()]
        red = (frame0[..., 2] > 150) & (frame0[..., 0] < 80)  # BGR: red is channel 2
        cols = np.flatnonzero(red.any(axis=0))
        assert cols.size, f"no red bottle in {path.name}"
        centre = frame0.shape[1] / 2
        assert (cols.mean() < centre) == (side == "left")
        assert actions[1, 1] == pytest.approx(TELEOP_SPEED if side == "left" else -TELEOP_SPEED)


def test_same_seed_same_episodes(tmp_path: Path) -> None:
    config = SyntheticConfig(episodes=2, seed=9, height=16, width=24)
    a, b = make_synthetic(tmp_path / "a", config), make_synthetic(tmp_path / "b", config)
    assert [p.name for p in a] == [p.name for p in b]
    with h5py.File(a[1], "r") as fa, h5py.File(b[1], "r") as fb:
        assert np.array_equal(fa["images"][()], fb["images"][()])


def test_defects_need_clean_company() -> None:
    with pytest.raises(ValueError, match="set episodes=2 or more"):  # the Python API names the setting
        SyntheticConfig(episodes=1, defects=True)
