"""A store written before segments (format 2, tests/data/format2.zarr) stays readable, and the first build or
edit on it carries its episodes into a segment, verified before they are copied."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import committed
from conftest import run_cli as run
from schemas.synthetic import SyntheticConfig
from vla_data.samples.dataset import WindowDataset
from vla_data.store.reader import open_store, verify
from vla_data.synthetic.episodes import make_synthetic

FORMAT2 = Path(__file__).parent / "data" / "format2.zarr"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FORMAT2, tmp_path / "old.zarr"))


@pytest.fixture(scope="module")
def new_episode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("new") / "raw"
    make_synthetic(out, SyntheticConfig(episodes=1, seed=99, height=24, width=40))
    return out


def test_a_format_2_store_reads_as_it_is(old: Path) -> None:
    store = open_store(old)
    assert store.manifest.format_version == 2 and not store.manifest.segments and len(store.episodes) == 6
    assert not verify(store) and store.camera("rgb").shape == (119, 16, 16, 3)
    assert len(WindowDataset(old, "train")) == 62


def test_the_first_build_on_it_copies_its_episodes_into_a_segment(old: Path, new_episode: Path) -> None:
    (v1,) = committed(open_store(old))
    before = open_store(old)
    frames, actions = np.asarray(before.camera("rgb")), before.action
    code, text = run("build-splits", str(new_episode), "-o", str(old), "--image-size", "16", "--val-ratio", "0.34")
    assert code == 0 and "1 added, 6 kept" in text, text
    now = open_store(old)
    assert now.manifest.format_version == 3 and len(now.manifest.segments) == 1 and len(now.episodes) == 7
    assert np.array_equal(np.asarray(now.camera("rgb"))[: len(frames)], frames)
    assert np.array_equal(now.action[: len(actions)], actions) and not verify(now)
    assert now.records()[0].instruction == before.records()[0].instruction
    v1_, _ = committed(now)
    assert v1_ == v1 and np.array_equal(np.asarray(open_store(f"{old}@{v1}").camera("rgb")), frames)  # still there


def test_an_edit_on_it_works_too(old: Path) -> None:
    code, text = run("remove", str(old), "0")
    assert code == 0 and "1 episode(s) removed" in text, text
    assert len(open_store(old).episodes) == 5 and not verify(open_store(old))


def test_a_damaged_shard_is_refused_before_it_is_copied(old: Path, new_episode: Path) -> None:
    (version,) = (old / "versions").iterdir()
    shard = version / "data" / "rgb" / "c" / "0" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    listing = sorted(p.relative_to(old) for p in old.rglob("*"))
    code, text = run("build-splits", str(new_episode), "-o", str(old), "--image-size", "16", "--val-ratio", "0.34")
    assert code == 1 and "checksum mismatch" in text and "data/rgb/c/0/0/0/0" in text and "Traceback" not in text
    assert sorted(p.relative_to(old) for p in old.rglob("*") if ".lock" not in p.name) == listing  # no laundering
