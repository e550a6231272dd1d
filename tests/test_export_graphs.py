"""ONNX export of a trained policy (vla_model.export_graphs): onnxruntime gives the PyTorch policy's features and
chunks, with no NonZero / Scatter op in the graphs, and the torch-free prototype (vla_client.onnx_probe) gives
the runner's chunks without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli as run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vla_data.samples.dataset import WindowDataset  # noqa: E402
from vla_model.export_graphs import check_graphs, encode_instruction, export_graphs, forbidden_ops  # noqa: E402
from vla_model.runtime import Policy  # noqa: E402

TRAIN = ["--model", "tiny-random", "--max-steps", "2", "--window", "3", "--chunk", "2", "--batch-size", "4",
         "--hidden", "16", "--lora-r", "2", "--val-every", "2", "--save-every", "2"]
CAMERAS = ["--camera", "front=images", "--camera", "side=observations/side_images:rgb"]
MAX_WORDS = 12
SHORT = "go to bottle"  # 3 tokens of the tiny tokenizer
NEAR_LIMIT = "navigate around the obstacles and reach the front of the beverage bottle"  # 12 tokens
CLIENT = Path(__file__).resolve().parents[1] / "client"

PROBE = """
import sys, numpy as np
from vla_client.onnx_probe import probe
data = np.load(sys.argv[2])
frames = [{c: data[c][t] for c in data.files} for t in range(len(data[data.files[0]]))]
np.save(sys.argv[4], probe(sys.argv[1], frames, sys.argv[3]))
print("torch" in sys.modules, "transformers" in sys.modules)
"""


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    code, text = run("make-synthetic", str(out), "--episodes", "4", "--image-size", "48x64", "--seed", "3",
                     "--cameras", "2")
    assert code == 0, text
    return out


# two cameras stored larger than the tower's 56 (the graph's resize shrinks, antialiased) with the LSTM head;
# one camera stored smaller (it enlarges) with the MLP head
@pytest.fixture(scope="module", params=[("lstm", 64, CAMERAS), ("mlp", 40, [])], ids=["2cam-lstm", "1cam-mlp"])
def trained(request: pytest.FixtureRequest, raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    history, size, cameras = request.param
    root = tmp_path_factory.mktemp(f"onnx-{history}")
    code, text = run("build-splits", str(raw), "-o", str(root / "s.zarr"), "--image-size", str(size), *cameras)
    assert code == 0, text
    code, text = run("train", str(root / "s.zarr"), "-o", str(root / "run"), "--history", history,
                     "--resize-on-device", *TRAIN)
    assert code == 0, text
    return root / "run", root / "s.zarr"


def frames_of(policy: Policy, store: Path, n: int = 5) -> np.ndarray:
    """(n, C, S, S, 3) stored RGB frames of the first train episode."""
    ds = WindowDataset(store, "train", spec=policy.spec, normalize=False)
    return np.ascontiguousarray(np.stack([ds.camera_frames[c].episode(0)[:n] for c in policy.camera_names], 1))


def test_graphs_match_the_policy_and_the_probe_needs_no_torch(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, store = trained
    policy = Policy.from_checkpoint(run_dir, "cpu")
    frames = frames_of(policy, store)
    info = export_graphs(policy, tmp_path / "x", max_words=MAX_WORDS)
    assert info.exporter == {"frame": "dynamo", "head": "dynamo"}
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["frame.onnx", "graphs.json", "head.onnx",
                                                                  "tokenizer.json"]
    for text, words in ((SHORT, 3), (NEAR_LIMIT, MAX_WORDS)):
        parity = check_graphs(policy, tmp_path / "x", frames, text)
        assert parity.words == words and parity.forbidden == []
        assert parity.feature < 1e-4 and parity.chunk < 1e-4, parity
    assert forbidden_ops(tmp_path / "x" / "frame.onnx") == []

    with pytest.raises(ValueError, match=f"takes at most {MAX_WORDS}"):
        encode_instruction(policy.model.tokenizer, NEAR_LIMIT + " left", MAX_WORDS, info.pad_id)

    by_camera = {c: frames[:, i] for i, c in enumerate(policy.camera_names)}
    np.savez(tmp_path / "frames.npz", **by_camera)
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "x"), str(tmp_path / "frames.npz"), SHORT,
                           str(tmp_path / "chunks.npy")], env={**os.environ, "PYTHONPATH": str(CLIENT)},
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]  # neither torch nor transformers imported
    np.testing.assert_allclose(np.load(tmp_path / "chunks.npy"), policy.episode_chunks(by_camera, SHORT), atol=1e-4)
    assert json.loads((tmp_path / "x" / "graphs.json").read_text())["cameras"] == policy.camera_names
