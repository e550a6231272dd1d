"""Segment batches: the index math, the sampler, the loader, and exactness against per-window batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_MODEL

from schemas.sample import Batching, BatchingConfig, SampleField, SegmentField, WindowSpec
from schemas.train import ModelConfig, TrainConfig
from vla_data.samples.dataset import WindowDataset
from vla_data.samples.loader import SegmentSampler, collate_samples, collate_segments, make_loader
from vla_data.samples.segments import cut_segments, segment_index
from vla_data.samples.windows import window_index
from vla_model.backbone import build_tiny_random
from vla_model.loss import masked_huber
from vla_model.policy import VLAPolicy, batch_inputs

SPEC = WindowSpec(window=4, chunk=3)
SEGMENTS = BatchingConfig(mode=Batching.segments, segment_length=4)


@pytest.mark.parametrize(("t", "n", "spec"), [
    (np.arange(0, 5), 18, SPEC),  # the episode start: pad frames repeat frame 0
    (np.arange(14, 18), 18, SPEC),  # the episode end: chunks run past it
    (np.arange(3, 9, 2), 18, WindowSpec(window=4, chunk=3, stride=2)),
    (np.array([0]), 1, SPEC),  # a one-frame episode
])
def test_segment_index_gathers_exactly_the_windows(t: np.ndarray, n: int, spec: WindowSpec) -> None:
    ix = segment_index(t, n, spec)
    assert (np.diff(ix.frames) > 0).all()  # each frame once, in episode order
    for j, a in enumerate(t):
        assert np.array_equal(ix.frames[ix.windows[j]], window_index(int(a), n, spec).frames)
    assert set(ix.frames) == {int(f) for a in t for f in window_index(int(a), n, spec).frames}
    if spec.stride == 1 and t[0] >= spec.window - 1:
        assert len(ix.frames) == len(t) + spec.window - 1  # L + W - 1 frames for L anchors


def test_cut_segments_covers_every_anchor_once_in_a_fixed_number_of_runs() -> None:
    rng = np.random.default_rng(0)
    shorts = set()
    for _ in range(20):
        runs = cut_segments(18, 8, rng)
        assert len(runs) == 3 and runs[0][0] == 0 and runs[-1][1] == 18
        assert all(b0 == a1 for (_, b0), (a1, _) in zip(runs, runs[1:], strict=False))
        assert sorted(b - a for a, b in runs) == [2, 8, 8]
        shorts.add(next(i for i, (a, b) in enumerate(runs) if b - a == 2))
    assert shorts == {0, 1, 2}  # the short run moves
    assert cut_segments(18, 8, None) == [(0, 8), (8, 16), (16, 18)]
    assert cut_segments(0, 8, rng) == [] and cut_segments(5, 8, rng) == [(0, 5)]


@pytest.fixture(scope="module")
def mirrored(learn_store: Path) -> WindowDataset:
    return WindowDataset(learn_store, "train", SPEC, augment="mirror")


def test_the_sampler_gives_every_sample_once_per_epoch_in_runs_of_one_episode(mirrored: WindowDataset) -> None:
    sampler = SegmentSampler(mirrored, 4, seed=3, block_episodes=5)
    epochs = [sampler.order(e) for e in (0, 1)]
    for segments in epochs:
        assert len(segments) == len(sampler)
        flat = [i for s in segments for i in s]
        assert sorted(flat) == list(range(len(mirrored)))
        for s in segments:
            assert 1 <= len(s) <= 4
            assert len({mirrored.sample_episode(i) for i in s}) == 1 and len({mirrored.is_mirrored(i) for i in s}) == 1
            assert np.all(np.diff([mirrored.t[mirrored.anchor(i)] for i in s]) == 1)  # consecutive anchors
    assert epochs[0] != epochs[1] and sampler.order(1) == epochs[1]  # seeded by (seed, epoch)
    assert SegmentSampler(mirrored, 4, seed=4, block_episodes=5).order(0) != epochs[0]
    assert any(mirrored.is_mirrored(s[0]) for s in epochs[0])


def test_a_segment_is_its_samples_each_frame_once(mirrored: WindowDataset) -> None:
    groups = mirrored.segment_groups()
    runs = [groups[0][:5], groups[1][-4:], groups[-1][:3]]  # an episode start, an end, a mirrored run
    assert mirrored.is_mirrored(int(runs[-1][0]))
    for run in runs:
        segment = mirrored.segment(tuple(run))
        for j, i in enumerate(run):
            sample = mirrored[int(i)]
            for camera, frames in segment["rgb"].items():
                assert torch.equal(frames[segment["window_frames"][j]], sample["rgb"][camera])
            for field in ("frame_mask", "actions", "chunk_mask"):
                assert torch.equal(segment[field][j], sample[field])
            assert segment["instruction"] == sample["instruction"] and segment["t"][j] == sample["t"]
    with pytest.raises(IndexError, match="one episode"):
        mirrored.segment((int(groups[0][-1]), int(groups[1][0])))


def test_segment_batches_ship_fewer_frames_for_the_same_samples(mirrored: WindowDataset) -> None:
    loader = make_loader(mirrored, 16, seed=0, batching=SEGMENTS)
    batch = next(iter(loader))
    b = len(batch[SampleField.t])
    frames = batch[SampleField.rgb]["rgb"]
    assert batch[SegmentField.window_frames].shape == (b, SPEC.window) and b <= 16
    assert len(frames) == len(batch[SegmentField.frame_instruction]) <= b + 4 * (SPEC.window - 1) < b * SPEC.window
    assert int(batch[SegmentField.window_frames].max()) == len(frames) - 1
    assert sum(len(batch[SampleField.t]) for batch in loader) == len(mirrored)
    with pytest.raises(ValueError, match="multiple of segment length"):
        make_loader(mirrored, 6, batching=SEGMENTS)
    with pytest.raises(ValueError, match="multiple of segment_length"):
        TrainConfig.model_validate({"data": {"store": "x", "batching": {"mode": "segments", "segment_length": 4}},
                                    "optim": {"batch_size": 6}})


def _loss_and_grads(policy: VLAPolicy, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    policy.zero_grad(set_to_none=True)
    loss = masked_huber(policy(*batch_inputs(batch)), batch[SampleField.actions], batch[SampleField.chunk_mask])
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}


def test_the_loss_and_every_gradient_equal_the_per_window_batch(mirrored: WindowDataset) -> None:
    """The same anchors (episode starts with pad frames, episode ends, mirrored ones) as one segment batch and as
    one per-window batch: fp32 on the CPU, the loss and the gradient of every trainable tensor agree."""
    groups = mirrored.segment_groups()
    runs = [groups[0][:4], groups[1][-4:], groups[2][6:10], groups[-1][:4]]
    segment_batch = collate_segments([mirrored.segment(tuple(r)) for r in runs])
    window_batch = collate_samples([mirrored[int(i)] for r in runs for i in r])
    assert torch.equal(segment_batch[SampleField.actions], window_batch[SampleField.actions])
    assert len(segment_batch[SampleField.rgb]["rgb"]) < len(runs) * 4 * SPEC.window
    policy = VLAPolicy(build_tiny_random(), ModelConfig.model_validate(SMALL_MODEL), action_dim=2, chunk=SPEC.chunk)
    torch.manual_seed(0)
    for p in policy.parameters():  # LoRA's B starts at zero: move it so every gradient is exercised
        if p.requires_grad:
            p.data += 0.05 * torch.randn_like(p)
    loss_s, grads_s = _loss_and_grads(policy, segment_batch)
    loss_w, grads_w = _loss_and_grads(policy, window_batch)
    assert loss_s == pytest.approx(loss_w, abs=1e-5) and loss_s > 0
    assert grads_s.keys() == grads_w.keys() and len(grads_s) > 4
    for name in grads_s:
        assert torch.allclose(grads_s[name], grads_w[name], atol=1e-5), name
    assert any(float(g.abs().max()) > 1e-3 for n, g in grads_s.items() if "lora_" in n)
