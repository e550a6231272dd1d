"""WindowDataset: exact windows, chunks and masks at the episode edges; loaders; caches; augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from click.testing import CliRunner, Result

from conftest import WORDED, segment_dir, store_of, version_dir

from schemas import RecorderSettings
from schemas.sample import MirrorRule, SampleField, SampleSummary, WindowSpec
from schemas.train import TrainConfig
from vla_data.samples.augment import mirror_frames, mirror_words
from vla_data.samples.dataset import WindowDataset
from vla_data.store.spans import ArraySpan, ShardVerifier, SpanReader
from vla_data.samples.frames import SPAN_FRAMES, SPAN_GAP, EpisodeFrames
from vla_data.samples.loader import EpisodeBlockSampler, make_loader
from vla_data.store.location import StoreLocation
from vla_data.samples.normalize import Normalizer
from vla_data.store.reader import open_store
from vla_data.synthetic.episodes import Episode

# (length, side, split): a 3-frame and an 18-frame episode at W=8, K=10, plus others for the loaders
RAMP = [(3, "left", "train"), (18, "right", "train"), (7, "left", "val"), (12, "right", "train"), (5, "left", "val")]


def ramp_value(episode: int, row: int) -> float:
    return 0.3 * episode + 0.01 * row  # distinct per episode and row, inside the recorder's bound


@pytest.fixture(scope="module")
def ramp_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Episodes whose every frame is one grey level and every action row a distinct value (episode, row)."""
    episodes = []
    for i, (n, side, split) in enumerate(RAMP):
        frames = np.stack([np.full((12, 20, 3), 40 * i + r, np.uint8) for r in range(n)])
        actions = np.zeros((n, 3), np.float32)
        actions[1:, 0] = [ramp_value(i, r) for r in range(1, n)]
        actions[1:, 1] = [-ramp_value(i, r) for r in range(1, n)]
        name = f"episode_20251106_12{i:02d}00_1box_hori_{side}_core_medium"
        episode = Episode(name, frames, actions, ["episode_start"] + ["start_action"] * (n - 1),
                          f"Reach the bottle on the {side}", {"num_frames": n})
        episodes.append((episode, split))
    return store_of(episodes, tmp_path_factory.mktemp("ramp"), tmp_path_factory.mktemp("ramp_store") / "ramp.zarr", 8)


def by_episode(ds: WindowDataset) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i in range(len(ds)):
        out.setdefault(int(ds.episode_ids[ds.sample_episode(i)]), []).append(i)
    return out


def test_sample_count_is_the_split_frame_count(ramp_store: Path) -> None:
    m = open_store(ramp_store).manifest
    for split in ("train", "val"):
        ds = WindowDataset(ramp_store, split, WindowSpec(window=8, chunk=10))
        assert len(ds) == m.split_frames[split] == sum(n for n, _, s in RAMP if s == split)
    assert len(WindowDataset(ramp_store, "train", WindowSpec(window=3, chunk=25))) == 33  # any W and K
    assert len(WindowDataset(ramp_store, "train", WindowSpec(stride=4))) == 1 + 5 + 3  # t = 0, 4, 8, ... per episode
    with pytest.raises(ValueError, match="split 'test' has no episodes"):
        WindowDataset(ramp_store, "test")


@pytest.mark.parametrize("length", [3, 18])
def test_window_values_and_masks_match_the_store(ramp_store: Path, length: int) -> None:
    ds = WindowDataset(ramp_store, "train", WindowSpec(window=8, chunk=10), normalize=False)
    group = zarr.open_group(segment_dir(ramp_store), mode="r")  # plain zarr, independently of the dataset
    table = pd.read_csv(version_dir(ramp_store) / "episodes.csv")
    row = table[table["n_frames"] == length].iloc[0]
    end = int(group["meta/episode_ends"][row["episode"]])
    rgb, action = group["data/rgb"][end - length : end], group["data/action"][end - length : end]
    samples = [ds[i] for i in by_episode(ds)[row["episode"]]]
    assert [s["t"] for s in samples] == list(range(length))
    for s in samples:
        t = s["t"]
        for j in range(8):
            tau = t - 7 + j
            assert bool(s["frame_mask"][j]) == (tau >= 0)
            assert np.array_equal(s["rgb"]["rgb"][j].numpy(), rgb[max(tau, 0)].transpose(2, 0, 1))
            for k in range(10):
                r = max(tau, 0) + 1 + k
                assert bool(s["chunk_mask"][j, k]) == (tau >= 0 and r < length)
                want = action[r] if r < length else np.zeros(2, np.float32)
                assert np.array_equal(s["actions"][j, k].numpy(), want)
    # the hand-checked edges, W=8, K=10, offset 1
    first, last = samples[0], samples[-1]
    assert first["frame_mask"].tolist() == [False] * 7 + [True]
    assert first["chunk_mask"][7].tolist() == [k + 1 < length for k in range(10)]
    assert not first["chunk_mask"][:7].any()
    assert last["frame_mask"].tolist() == [False] * max(0, 8 - length) + [True] * min(8, length)
    assert not last["chunk_mask"][7].any()  # after the last frame the robot stops: all pad, all masked
    assert (last["actions"][7] == 0).all()
    assert samples[-2]["chunk_mask"][7].tolist() == [True] + [False] * 9


def test_no_window_reads_another_episode(ramp_store: Path) -> None:
    ds = WindowDataset(ramp_store, "train", WindowSpec(window=8, chunk=10), normalize=False)
    table = open_store(ramp_store).episodes.set_index("episode")
    for i in range(len(ds)):
        s = ds[i]
        position = RAMP_POSITION[Path(table.loc[s["episode"], "source_path"]).name]
        grey = s["rgb"]["rgb"].numpy().reshape(8, -1)
        assert ((grey // 40) == position).all()  # every frame, padded or not, is this episode's
        real = s["actions"][..., 0][s["chunk_mask"]].numpy()
        assert np.allclose(np.floor((real + 1e-4) / 0.3), position)


RAMP_POSITION = {f"episode_20251106_12{i:02d}00_1box_hori_{side}_core_medium.h5": i for i, (_, side, _) in enumerate(RAMP)}


def test_normalisation_round_trips(ramp_store: Path) -> None:
    normalised = WindowDataset(ramp_store, "train")
    physical = WindowDataset(ramp_store, "train", normalize=False)
    stats = normalised.manifest.stats
    offsets, scales = stats.offset_scale()
    for i in (0, 5, len(physical) - 1):
        n, p = normalised[i]["actions"].numpy(), physical[i]["actions"].numpy()
        assert np.allclose(n, (p - offsets) / scales, atol=1e-6)
        assert np.allclose(normalised.denormalize(n), p, atol=1e-6)
    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    norm = Normalizer(stats)
    assert np.allclose(norm.denormalize(norm.normalize(x)), x, rtol=0, atol=1e-6)
    past_end = normalised[len(normalised) - 1]  # last anchor: its last frame's chunk is all pad
    assert np.allclose(past_end["actions"][7].numpy(), norm.zero_velocity())


def test_mirror_flips_frames_negates_lateral_swaps_words_and_is_its_own_inverse(ramp_store: Path) -> None:
    plain = WindowDataset(ramp_store, "train", normalize=False)
    mirrored = WindowDataset(ramp_store, "train", normalize=False, augment="mirror")
    n = len(plain)
    assert len(mirrored) == 2 * n
    for i in (0, 7, n - 1):
        a, b = plain[i], mirrored[i + n]
        assert torch.equal(mirrored[i]["rgb"]["rgb"], a["rgb"]["rgb"])  # the first half is the plain dataset
        assert torch.equal(b["rgb"]["rgb"], a["rgb"]["rgb"].flip(-1))
        assert torch.equal(b["actions"][..., 0], a["actions"][..., 0])  # linear_x unchanged
        assert torch.equal(b["actions"][..., 1], -a["actions"][..., 1])  # linear_y negated
        assert torch.equal(b["chunk_mask"], a["chunk_mask"])
        assert ("left" in a["instruction"]) == ("right" in b["instruction"])
    rule = MirrorRule()
    assert mirror_words("Left of the left box, then right", rule) == "Right of the right box, then left"
    assert mirror_words(mirror_words("go left, leftover", rule), rule) == "go left, leftover"
    frames = np.random.default_rng(1).integers(0, 255, (2, 4, 6, 3), dtype=np.uint8)
    assert np.array_equal(mirror_frames(mirror_frames(frames)), frames)
    assert not np.array_equal(mirror_frames(frames), frames)


def lateral_store(tmp: pytest.TempPathFactory, action_dim: int, **options: object) -> Path:
    """Three mirrorable (side word) episodes of a recorder writing ``action_dim`` channels, each channel a
    distinct non-zero ramp (channel c of row r: (c + 1) * (0.1 + 0.01 r)), built with ``options``."""
    episodes = []
    for i, (n, split) in enumerate([(6, "train"), (9, "train"), (5, "val")]):
        rows = 0.1 + 0.01 * np.arange(n, dtype=np.float32)
        actions = np.stack([(c + 1) * rows for c in range(action_dim)], axis=1).astype(np.float32)
        name = f"episode_20251106_14{i:02d}00_1box_hori_left_core_medium"
        episodes.append((Episode(name, np.zeros((n, 12, 20, 3), np.uint8), actions, ["start_action"] * n,
                                 "Reach the bottle on the left", {"num_frames": n}), split))
    return store_of(episodes, tmp.mktemp("lateral"), tmp.mktemp("lateral_store") / "s.zarr", 8,
                    RecorderSettings(action_dim=action_dim), **options)


def mirrored_sign(ds: WindowDataset) -> list[float]:
    """Per stored channel, mirrored actions / plain actions, over every real entry of the first sample."""
    plain, mirrored = ds[0], ds[ds.n_anchors]
    mask = plain["chunk_mask"].numpy()
    a, b = plain["actions"].numpy()[mask], mirrored["actions"].numpy()[mask]
    assert (a != 0).all() and mask.any()  # every channel moves, so a sign change shows
    ratio = b / a
    assert np.allclose(ratio, ratio[0])
    return ratio[0].tolist()


@pytest.mark.parametrize(("channels", "names", "sign"), [
    ([0, 1, 2], ["vx", "vy", "wz"], [1.0, -1.0, -1.0]),  # custom names on the recorder's channels
    ([2, 0], ["turn", "forward"], [-1.0, 1.0]),  # another order: stored channel 0 is angular_z
])
def test_mirror_negates_by_recorder_channel_not_by_name(tmp_path_factory: pytest.TempPathFactory,
                                                        channels: list[int], names: list[str], sign: list[float]) -> None:
    store = lateral_store(tmp_path_factory, 3, action_channels=channels, action_names=names)
    assert open_store(store).manifest.actions.names == names
    assert mirrored_sign(WindowDataset(store, "train", normalize=False, augment="mirror")) == sign


def inspect_sample(store: Path, *args: str) -> Result:
    from pipelines.cli import main
    return CliRunner().invoke(main, ["inspect-sample", str(store), *args])


def test_mirror_refuses_a_recorder_it_cannot_tell_and_follows_an_explicit_rule(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    store = lateral_store(tmp_path_factory, 2)  # [vx, wz] say: not the teleop recorder's row
    assert len(WindowDataset(store, "train")) == 6 + 9  # unaugmented, nothing to decide
    with pytest.raises(ValueError, match=r"recorder has 2 action channels .* data\.mirror\.negate_channels in the train "
                                         r"config; set mirror\.negate_channels=C,C"):
        WindowDataset(store, "train", augment="mirror")
    refused = inspect_sample(store, "--augment", "mirror", "--json")
    assert refused.exit_code == 1 and "list their recorder indices in data.mirror.negate_channels" in refused.output
    assert "pass --negate-channels C,C" in refused.output  # inspect-sample words the setting as its flag
    given = inspect_sample(store, "--augment", "mirror", "--negate-channels", "1", "--index", "-1", "--json")
    assert given.exit_code == 0, given.output
    summary = SampleSummary.model_validate_json(given.stdout)  # the 9-frame episode's last anchor, t=8, mirrored
    assert summary.mirrored and summary.t == 8
    row_8 = summary.actions[6][0]  # window frame 7's next row
    assert np.allclose(row_8, [0.1 + 0.01 * 8, -2 * (0.1 + 0.01 * 8)])  # channel 0 kept, channel 1 negated
    explicit = WindowDataset(store, "train", normalize=False, augment="mirror", mirror=MirrorRule(negate_channels=(1,)))
    assert mirrored_sign(explicit) == [1.0, -1.0]
    with pytest.raises(ValueError, match=r"negate_channels \[2\] are not channels of the store's recorder"):
        WindowDataset(store, "train", augment="mirror", mirror=MirrorRule(negate_channels=(1, 2)))


def test_mirror_rule_reads_old_configs_and_refuses_negation_by_name() -> None:
    assert MirrorRule.model_validate({"negate": ["linear_y", "angular_z"], "side_words": []}) == MirrorRule()
    assert TrainConfig.model_validate({"data": {"store": "s.zarr", "mirror": {"side_words": [["a", "b"]]}}}
                                      ).data.mirror.negate_channels is None
    with pytest.raises(ValueError, match=r"negate \['vy'\]: channels are no longer negated by name; give negate_channels"):
        MirrorRule.model_validate({"negate": ["vy"]})
    with pytest.raises(ValueError, match="repeats a channel"):
        MirrorRule(negate_channels=(1, 1))
    with pytest.raises(ValueError):
        MirrorRule(negate_channels=(-1,))


KOREAN = MirrorRule(side_words=(("왼쪽", "오른쪽"),))


def test_mirror_words_swap_configured_pairs_with_particles_and_english_whole_words() -> None:
    assert mirror_words("장애물을 피해 왼쪽에 있는 음료수 병 앞까지 이동", KOREAN) == "장애물을 피해 오른쪽에 있는 음료수 병 앞까지 이동"
    assert mirror_words("왼쪽으로 돌고 오른쪽 병까지", KOREAN) == "오른쪽으로 돌고 왼쪽 병까지"
    assert mirror_words("왼쪽에 있는 병", MirrorRule()) == "왼쪽에 있는 병"  # not a side word without the pair
    assert mirror_words("LEFT, then left2 and leftover; Right.", KOREAN) == "RIGHT, then left2 and leftover; Left."
    with pytest.raises(ValueError, match=r"\['left'\] appear more than once"):
        MirrorRule(side_words=(("Left", "links"),))
    with pytest.raises(ValueError, match="empty"):
        MirrorRule(side_words=(("왼쪽", " "),))


def test_mirror_leaves_out_episodes_whose_instruction_names_no_side(worded_store: Path) -> None:
    ids = {text: int(e) for e, text in open_store(worded_store).episodes[["episode", "instruction"]].to_numpy()}
    korean, sideless, english = (ids[text] for _, _, text in (WORDED[2], WORDED[1], WORDED[0]))
    plain = WindowDataset(worded_store, "train", normalize=False)
    ds = WindowDataset(worded_store, "train", normalize=False, augment="mirror", mirror=KOREAN)
    n = len(plain)
    assert len(ds) == n + 5 + 6 and ds.unmirrored_episodes == [sideless]  # the English and the Korean episode
    mirrored = [ds[i] for i in range(n, len(ds))]
    assert [s["episode"] for s in mirrored] == [english] * 5 + [korean] * 6
    assert {s["instruction"] for s in mirrored} == {"Reach the bottle on the right", "장애물을 피해 오른쪽에 있는 음료수 병 앞까지 이동"}
    by_anchor = {(s["episode"], s["t"]): s for s in (plain[i] for i in range(n))}
    for i, s in enumerate(mirrored, start=n):
        assert ds.is_mirrored(i) and int(ds.episode_ids[ds.sample_episode(i)]) == s["episode"]
        original = by_anchor[s["episode"], s["t"]]
        assert torch.equal(s["rgb"]["rgb"], original["rgb"]["rgb"].flip(-1))
        assert torch.equal(s["actions"][..., 1], -original["actions"][..., 1])
    english_only = WindowDataset(worded_store, "train", augment="mirror")
    assert len(english_only) == n + 5 and english_only.unmirrored_episodes == sorted([sideless, korean])
    assert WindowDataset(worded_store, "train").unmirrored_episodes == []  # no augment, nothing left out


def _epoch(loader: torch.utils.data.DataLoader) -> list[tuple[int, int]]:
    return [(int(e), int(t)) for batch in loader for e, t in zip(batch[SampleField.episode], batch[SampleField.t], strict=True)]


def test_two_workers_yield_the_same_batches_as_none(ramp_store: Path) -> None:
    ds = WindowDataset(ramp_store, "train", WindowSpec(window=4, chunk=3), augment="mirror")
    zero = make_loader(ds, batch_size=5, workers=0, seed=3)
    two = make_loader(ds, batch_size=5, workers=2, seed=3)
    for _ in range(2):  # two epochs: the order changes per epoch, identically
        a, b = list(zero), list(two)
        assert len(a) == len(b) == -(-len(ds) // 5)
        for x, y in zip(a, b, strict=True):
            assert x[SampleField.rgb].keys() == y[SampleField.rgb].keys() == {"rgb"}
            assert torch.equal(x[SampleField.rgb]["rgb"], y[SampleField.rgb]["rgb"])
            for field in (SampleField.actions, SampleField.chunk_mask, SampleField.frame_mask):
                assert torch.equal(x[field], y[field])
            assert x[SampleField.instruction] == y[SampleField.instruction]
    batch = a[0]
    assert batch[SampleField.rgb]["rgb"].dtype == torch.uint8 and batch[SampleField.rgb]["rgb"].shape[1:] == (4, 3, 8, 8)
    assert batch[SampleField.actions].shape[1:] == (4, 3, 2) and batch[SampleField.actions].dtype == torch.float32
    assert _epoch(make_loader(ds, batch_size=5, seed=3)) != _epoch(make_loader(ds, batch_size=5, seed=4))


def test_memory_and_lru_paths_give_identical_samples(ramp_store: Path) -> None:
    memory = WindowDataset(ramp_store, "train", memory_budget=1 << 30)
    lru = WindowDataset(ramp_store, "train", memory_budget=0, cache_episodes=1)
    assert memory.frames.in_memory and not lru.frames.in_memory
    for i in range(len(memory)):
        a, b = memory[i], lru[i]
        assert torch.equal(a[SampleField.rgb]["rgb"], b[SampleField.rgb]["rgb"])
        assert all(torch.equal(a[f], b[f]) for f in (SampleField.actions, SampleField.chunk_mask))
    n_episodes = len(memory.episode_ids)
    assert lru.frames.decoded_episodes == n_episodes  # in store order, one decode per episode, not per sample
    assert memory.frames.decoded_episodes == n_episodes


def test_the_in_memory_fill_reads_neighbouring_episodes_together() -> None:
    """Every read of an object-storage array costs round trips: the fill reads episodes close together (in store
    order, whatever the split's order) as one span, never across a long run of other frames nor past the cap."""
    ranges = [(40, 58), (0, 18), (18, 40), (58 + SPAN_GAP + 1, 100 + SPAN_GAP), (100 + SPAN_GAP, 400 + SPAN_GAP)]
    seg, other = StoreLocation(path=Path("segments/a")), StoreLocation(path=Path("segments/b"))
    spans = [ArraySpan(seg, "data/rgb", a, b) for a, b in ranges] + [ArraySpan(other, "data/rgb", 58, 60)]
    frames = EpisodeFrames(spans, SpanReader(ShardVerifier({})), in_memory=True, cache_episodes=1)
    assert [(s.root, s.start, s.stop, members) for s, members in frames._spans()] == [
        (seg, 0, 58, [1, 2, 0]), (seg, 58 + SPAN_GAP + 1, 100 + SPAN_GAP, [3]),
        (seg, 100 + SPAN_GAP, 400 + SPAN_GAP, [4]), (other, 58, 60, [5])]  # never across two segments
    assert 400 - 100 > SPAN_FRAMES  # the last is one episode longer than the cap: read alone, whole


def test_episode_block_sampler_is_a_seeded_permutation_in_episode_blocks(ramp_store: Path) -> None:
    ds = WindowDataset(ramp_store, "train")
    sampler = EpisodeBlockSampler(ds, seed=0, block_episodes=1)
    order = sampler.order(0)
    assert sorted(order.tolist()) == list(range(len(ds)))
    episodes = [ds.sample_episode(i) for i in order]
    changes = sum(a != b for a, b in zip(episodes, episodes[1:], strict=False))
    assert changes == len(ds.episode_ids) - 1  # one block per episode: each visited once, contiguously
    assert np.array_equal(order, EpisodeBlockSampler(ds, seed=0, block_episodes=1).order(0))
    assert not np.array_equal(sampler.order(0), sampler.order(1))


def test_window_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        WindowSpec(window=0)
    with pytest.raises(ValueError):
        WindowSpec(action_offset=-1)


def test_package_exports_the_dataset_without_importing_torch_for_other_commands() -> None:
    import subprocess
    import sys

    code = "import sys, vla_data, pipelines.cli; assert 'torch' not in sys.modules; print(vla_data.WindowDataset.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "WindowDataset"


def test_inspect_sample_cli_json_png_and_errors(ramp_store: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main
    from schemas.sample import SampleSummary

    def run(*args: str) -> tuple[int, str, str]:
        r = CliRunner().invoke(main, ["inspect-sample", str(ramp_store), *args])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        return r.exit_code, r.stdout, r.stderr

    code, out, _ = run("--index", "-1", "--json", "--out", str(tmp_path / "s.png"))
    assert code == 0
    summary = SampleSummary.model_validate_json(out)
    ds = WindowDataset(ramp_store, "train", normalize=False)
    want = ds[len(ds) - 1]
    assert summary.index == len(ds) - 1 and summary.t == want["t"] and summary.episode == want["episode"]
    assert summary.shapes[SampleField.actions] == [8, 10, 2] and summary.action_names == ["linear_x", "linear_y"]
    assert summary.frame_mask == want["frame_mask"].tolist() and summary.chunk_mask == want["chunk_mask"].tolist()
    assert np.allclose(summary.actions, want["actions"].numpy(), atol=1e-5)  # physical units
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run("--index", str(len(ds)))
    assert code == 1 and f"has {len(ds)} samples" in err
    code, _, err = run("--split", "test")
    assert code == 1 and "no episodes" in err


def test_inspect_sample_window_flags_reach_the_dataset_whole(ramp_store: Path) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main
    from schemas.sample import SampleSummary

    index = 10  # the 18-frame episode, t > 0
    args = ["inspect-sample", str(ramp_store), "--index", str(index), "--json"]
    result = CliRunner().invoke(main, [*args, "--window", "3", "--chunk", "2", "--action-offset", "0"])
    assert result.exit_code == 0, result.output
    summary = SampleSummary.model_validate_json(result.stdout)
    ds = WindowDataset(ramp_store, "train", WindowSpec(window=3, chunk=2, action_offset=0), normalize=False)
    size = ds.manifest.preprocessing.image_size
    assert summary.cameras == {"rgb": [3, 3, size, size]} and summary.shapes[SampleField.actions] == [3, 2, 2]
    rows = ds.actions[ds.sample_episode(index)]
    assert np.allclose(summary.actions[-1], rows[summary.t : summary.t + 2], atol=1e-6)  # offset 0: rows t, t+1
    default = SampleSummary.model_validate_json(CliRunner().invoke(main, args).stdout)  # no flags: WindowSpec()
    spec = WindowSpec()
    assert default.shapes[SampleField.actions] == [spec.window, spec.chunk, 2]
    assert np.allclose(default.actions[-1][0], rows[default.t + spec.action_offset], atol=1e-6)


def test_inspect_sample_mirrors_with_the_side_words_given(worded_store: Path) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main
    from schemas.sample import SampleSummary

    args = ["inspect-sample", str(worded_store), "--augment", "mirror", "--index", "-1", "--json"]
    result = CliRunner().invoke(main, [*args, "--side-words", "왼쪽,오른쪽"])
    assert result.exit_code == 0, result.output
    summary = SampleSummary.model_validate_json(result.stdout)
    assert summary.mirrored and summary.instruction == "장애물을 피해 오른쪽에 있는 음료수 병 앞까지 이동"
    english = SampleSummary.model_validate_json(CliRunner().invoke(main, args).stdout)
    assert english.mirrored and english.instruction == "Reach the bottle on the right"  # Korean not mirrored
    result = CliRunner().invoke(main, [*args, "--side-words", "왼쪽"])
    assert result.exit_code == 2 and "LEFT,RIGHT" in result.output
