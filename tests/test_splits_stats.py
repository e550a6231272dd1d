"""Splits per episode: stable, stratified, disjoint; stats exact on the given rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from schemas.store import ChannelStats, NormMode, NormStats, Split, SplitConfig, Stratify
from vla_data.build.splits import SplitError, assign_splits
from vla_data.store.stats import action_stats


def _hashes(n: int, prefix: str = "h") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def test_every_stratum_with_two_episodes_is_in_train_and_val() -> None:
    hashes = _hashes(40)
    strata = [f"s{i % 8}" for i in range(40)]  # 8 scenarios of 5 episodes; 10% val would miss most of them
    splits = assign_splits(hashes, strata, SplitConfig(val_ratio=0.1, seed=1))
    for s in set(strata):
        got = {splits[i] for i in range(40) if strata[i] == s}
        assert {Split.train, Split.val} <= got, s


def test_adding_episodes_never_moves_an_existing_one() -> None:
    config = SplitConfig(val_ratio=0.2, seed=3)
    old = _hashes(20)
    strata_old = [f"s{i % 4}" for i in range(20)]
    first = assign_splits(old, strata_old, config)
    new = old + _hashes(15, "n")
    strata_new = strata_old + [f"s{i % 5}" for i in range(15)]
    second = assign_splits(new, strata_new, config, existing=dict(zip(old, first, strict=True)))
    assert second[:20] == first
    assert {Split.train, Split.val} <= {second[i] for i in range(20, 35) if strata_new[i] == "s4"}


def test_assignment_depends_on_content_and_seed_not_order() -> None:
    hashes, strata = _hashes(30), ["x"] * 30
    config = SplitConfig(val_ratio=0.3, seed=7, stratify=Stratify.none)
    forward = dict(zip(hashes, assign_splits(hashes, strata, config), strict=True))
    backward = dict(zip(hashes[::-1], assign_splits(hashes[::-1], strata, config), strict=True))
    assert forward == backward
    other_seed = assign_splits(hashes, strata, SplitConfig(val_ratio=0.3, seed=8, stratify=Stratify.none))
    assert list(forward.values()) != other_seed


def test_ratios_are_roughly_kept_and_test_split_works() -> None:
    splits = assign_splits(_hashes(1000), ["x"] * 1000, SplitConfig(val_ratio=0.1, test_ratio=0.2))
    counts = {s: splits.count(s) for s in Split}
    assert 60 < counts[Split.val] < 140 and 150 < counts[Split.test] < 250


def test_one_episode_cannot_be_split() -> None:
    with pytest.raises(SplitError, match="at least one train and one val"):
        assign_splits(["a"], ["x"], SplitConfig())
    assert sorted(assign_splits(["a", "b"], ["x", "y"], SplitConfig())) == [Split.train, Split.val]


def test_split_config_refuses_no_room_for_train() -> None:
    with pytest.raises(ValidationError):
        SplitConfig(val_ratio=0.5, test_ratio=0.5)


def test_action_stats_are_exact() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(501, 2)).astype(np.float32)
    (c0, c1) = action_stats(a)
    assert c0.count == 501
    assert c0.mean == pytest.approx(float(a[:, 0].astype(np.float64).mean()))
    assert c1.std == pytest.approx(float(a[:, 1].astype(np.float64).std()))
    assert c1.q99 == pytest.approx(float(np.quantile(a[:, 1].astype(np.float64), 0.99)))
    assert (c0.min, c0.max) == (float(a[:, 0].min()), float(a[:, 0].max()))


@pytest.mark.parametrize("mode", list(NormMode))
def test_constant_channel_normalises_without_dividing_by_zero(mode: NormMode) -> None:
    a = np.array([[1.15, 0.0], [-1.15, 0.0], [0.0, 0.0]], np.float32)
    stats = NormStats(mode=mode, action=action_stats(a), image_mean=[0.5] * 3, image_std=[0.2] * 3)
    offset, scale = stats.offset_scale()
    assert scale[1] == 1.0 and offset[1] == 0.0
    normalised = (a - np.array(offset)) / np.array(scale)
    assert np.all(np.isfinite(normalised)) and np.all(normalised[:, 1] == 0)
    assert np.allclose(normalised * np.array(scale) + np.array(offset), a)


def test_channel_stats_round_trip_json() -> None:
    c = ChannelStats(count=3, mean=0.1, std=0.2, min=-1, max=1, q01=-0.9, q99=0.9)
    assert ChannelStats.model_validate_json(c.model_dump_json()) == c


@pytest.mark.parametrize("only", [Split.train, Split.val])
def test_a_split_file_without_val_or_train_rows_says_so(clean_dir: Path, tmp_path: Path, only: Split) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main

    split_file = tmp_path / "splits.csv"
    names = sorted(p.name for p in clean_dir.glob("*.h5"))
    split_file.write_text("episode,split\n" + "".join(f"{name},{only.value}\n" for name in names))
    result = CliRunner().invoke(main, ["build-splits", str(clean_dir), "-o", str(tmp_path / "ds.zarr"), "--image-size",
                                       "8", "--split-file", str(split_file)])
    missing = ({Split.train, Split.val} - {only}).pop().value
    assert result.exit_code == 1
    assert f"the split file assigns no episode to {missing}; add rows with split {missing}" in result.output
    assert "record more" not in result.output
    with pytest.raises(SplitError, match="record more episodes"):  # without a split file that is the advice
        assign_splits(["a"], ["x"], SplitConfig(), existing={"a": only})
