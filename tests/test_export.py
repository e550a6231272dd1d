"""`vla-data export` and the robot's ``LocalPolicy``: an exported tiny-random run, driven through onnxruntime in a
process that has no torch, gives ``PolicyRunner``'s chunks on every frame of its val episodes (two cameras stored
larger than the tower, the LSTM head; the MLP head and one camera stored smaller, untrained); the graphs hold no
NonZero / Scatter op; the robot prepares frames exactly as the store holds them; a bad folder, frame or
instruction is a clear error; an export that is not the policy is refused and publishes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli as run

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pipelines.predict import read_recorded  # noqa: E402
from schemas import RecorderSettings  # noqa: E402
from schemas.export import ExportedPolicy  # noqa: E402
from vla_client import local  # noqa: E402
from vla_client.local import LocalPolicy, PolicyFolderError  # noqa: E402
from vla_data.store.reader import open_store  # noqa: E402
from vla_data.synthetic.episodes import camera_settings  # noqa: E402
from vla_model.runtime import Policy  # noqa: E402

TRAIN = ["--model", "tiny-random", "--max-steps", "2", "--window", "3", "--chunk", "2", "--batch-size", "4",
         "--hidden", "16", "--lora-r", "2", "--val-every", "2", "--save-every", "2"]
CAMERAS = ["--camera", "front=images", "--camera", "side=observations/side_images:rgb"]
MAX_WORDS = 24
CLIENT = Path(__file__).resolve().parents[1] / "client"

# the robot's process: only the client package on the path; reports whether torch or transformers got imported
ROBOT = """
import json, sys
import numpy as np
from vla_client.local import LocalPolicy
policy = LocalPolicy(sys.argv[1])
data = np.load(sys.argv[2])
chunks = {}
for name, instruction in json.loads(sys.argv[3]):
    policy.reset(instruction)
    frames = {c: data[f"{name}/{c}"] for c in policy.cameras}
    chunks[name] = np.stack([policy.step({c: f[t] for c, f in frames.items()}) for t in range(len(data[f"{name}/{policy.cameras[0]}"]))])
np.savez(sys.argv[4], **chunks)
print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "providers": policy.providers}))
"""


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    code, text = run("make-synthetic", str(out), "--episodes", "4", "--image-size", "48x64", "--seed", "3",
                     "--cameras", "2")
    assert code == 0, text
    return out


@pytest.fixture(scope="module")
def exported(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, RecorderSettings]:
    """Two cameras stored at 64 (the frame graph shrinks them to the tower's 56, antialiased), the LSTM head."""
    root = tmp_path_factory.mktemp("export")
    code, text = run("build-splits", str(raw), "-o", str(root / "s.zarr"), "--image-size", "64", "--val-ratio", "0.5",
                     *CAMERAS)
    assert code == 0, text
    code, text = run("train", str(root / "s.zarr"), "-o", str(root / "run"), "--resize-on-device", *TRAIN)
    assert code == 0, text
    code, text = run("export", str(root / "run"), "-o", str(root / "policy"), "--max-words", str(MAX_WORDS))
    assert code == 0 and "parity on" in text, text
    return root / "run", root / "s.zarr", root / "policy", camera_settings(2)


def test_a_one_camera_mlp_policy_stored_smaller_than_the_tower_exports_as_well(tmp_path: Path) -> None:
    """The other branches of the graphs (no history, the frame enlarged to the tower's size), on an untrained
    policy: parity with PyTorch and no data-dependent op."""
    from schemas.export import ExportOptions
    from schemas.store import ActionSelection, ChannelStats, NormStats, Preprocessing
    from schemas.train import BackboneSpec, CheckpointMeta, ModelConfig, TrainConfig
    from vla_model.backbone import build_tiny_random
    from vla_model.export_graphs import check_graphs, export_graphs, forbidden_ops
    from vla_model.policy import VLAPolicy

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = ModelConfig(history="mlp", hidden=16, resize_on_device=True)
    model = VLAPolicy(build_tiny_random(), config, action_dim=2, chunk=2)
    channel = ChannelStats(count=1, mean=0.2, std=0.8, min=-1.15, max=1.15, q01=-1.15, q99=1.15)
    meta = CheckpointMeta(
        tool_version="test", step=0, val_loss=None, files={}, backbone=BackboneSpec(source="tiny-random", config={}),
        train_config=TrainConfig.model_validate({"data": {"store": "-", "window": {"window": 3, "chunk": 2}},
                                                 "model": config.model_dump()}),
        preprocessing=Preprocessing(image_size=40), actions=ActionSelection(channels=[0, 1], names=["x", "y"]),
        stats=NormStats(action=[channel] * 2, image_mean=[0.5] * 3, image_std=[0.25] * 3))
    policy = Policy(model, meta)
    graphs = export_graphs(policy, tmp_path, ExportOptions(max_words=MAX_WORDS))
    frames = np.random.default_rng(0).integers(0, 256, (5, 1, 40, 40, 3), dtype=np.uint8)
    parity = check_graphs(policy, tmp_path, graphs, frames, "go to the bottle")
    assert parity.min_feature_cosine > 0.99999 and parity.max_chunk_error < 1e-4, parity
    assert forbidden_ops(tmp_path / "frame.onnx") == forbidden_ops(tmp_path / "head.onnx") == []


def test_the_exported_policy_drives_as_the_runner_in_a_process_without_torch(exported, tmp_path: Path) -> None:
    run_dir, store_path, folder, settings = exported
    policy = Policy.from_checkpoint(run_dir, "cpu")
    store = open_store(store_path)
    val = [(i, r) for i, r in enumerate(store.records()) if r.split == "val"][:2]
    assert len(val) == 2
    arrays, episodes, recorded = {}, [], {}
    for i, record in val:
        frames = read_recorded(Path(record.source_path), settings)
        names = {c: (c if len(policy.cameras) > 1 else settings.camera.name) for c in policy.camera_names}
        recorded[i] = ({c: frames.frames[n] for c, n in names.items()}, {c: frames.color_orders[n] for c, n in names.items()})
        arrays |= {f"e{i}/{c}": f for c, f in recorded[i][0].items()}
        episodes.append((f"e{i}", record.instruction))
    np.savez(tmp_path / "frames.npz", **arrays)
    done = subprocess.run([sys.executable, "-c", ROBOT, str(folder), str(tmp_path / "frames.npz"), json.dumps(episodes),
                           str(tmp_path / "chunks.npz")], env={**os.environ, "PYTHONPATH": str(CLIENT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"torch": False, "transformers": False, "providers": ["CPUExecutionProvider"]}
    chunks = np.load(tmp_path / "chunks.npz")
    for i, record in val:  # every frame, the first W ones (padded with the first frame) included
        frames, orders = recorded[i]
        runner = policy.runner(orders)
        runner.reset(record.instruction)
        want = np.stack([runner.step({c: f[t] for c, f in frames.items()}) for t in range(len(chunks[f"e{i}"]))])
        np.testing.assert_allclose(chunks[f"e{i}"], want, atol=1e-4, rtol=0)

    # the robot prepares a frame exactly as the build stored it (the same code, vla_client.preprocess)
    robot = LocalPolicy(folder)
    i, record = val[0]
    start, _ = store.episode_range(i)
    stored = np.stack([store.camera(c)[start : start + 3] for c in policy.camera_names], axis=1)
    prepared = np.concatenate([robot.prepare({c: f[t] for c, f in recorded[i][0].items()}) for t in range(3)])
    np.testing.assert_array_equal(prepared, stored)

    # the graphs, read as onnx reads them: no op with a data-dependent shape
    ops = {node.op_type for name in ("frame.onnx", "head.onnx") for node in onnx.load(str(folder / name)).graph.node}
    assert not ops & {"NonZero", "ScatterND", "ScatterElements"} and "Resize" in ops
    # policy.json is the schema's, and the robot reads every field it defines
    exported_policy = ExportedPolicy.model_validate_json((folder / "policy.json").read_text())
    assert set(local.FIELDS) == set(ExportedPolicy.model_fields)
    assert exported_policy.cameras[0].name == policy.camera_names[0] and exported_policy.data == policy.meta.data
    assert exported_policy.action_levels == policy.teleop_levels() == LocalPolicy(folder).metadata["action_levels"]
    assert exported_policy.parity.max_chunk_error < 1e-4 and sorted(exported_policy.files) == [
        "frame.onnx", "head.onnx", "tokenizer.json"]


def test_a_damaged_folder_a_wrong_frame_or_instruction_is_a_clear_error(exported, tmp_path: Path) -> None:
    _, _, folder, _ = exported
    robot = LocalPolicy(folder)
    cameras, size = robot.cameras, robot.policy["image_size"]
    frame = np.zeros((48, 64, 3), np.uint8)
    robot.reset("go to the bottle")
    with pytest.raises(ValueError, match=f"no frame of camera\\(s\\) {cameras[-1]}"):
        robot.step({cameras[0]: frame} if len(cameras) > 1 else {"elsewhere": frame})
    for bad, said in ((frame.astype(np.float32), r"\(H, W, 3\) uint8"), (frame[..., :1], r"\(H, W, 3\) uint8"),
                      (np.zeros((1, 1, 3), np.uint8), "a 1x1 frame is smaller than the policy reads")):
        with pytest.raises(ValueError, match=said):
            robot.step(dict.fromkeys(cameras, bad))
    with pytest.raises(ValueError, match=f"takes at most {MAX_WORDS}"):
        robot.reset(" ".join(["bottle"] * (MAX_WORDS + 1)))
    assert robot.step(dict.fromkeys(cameras, frame)).shape == (2, 2)  # still usable after every refusal
    assert robot.metadata["image_size"] == size and robot.metadata["window"] == 3

    def damaged(change) -> str:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(folder, copy)
        change(copy)
        with pytest.raises(PolicyFolderError) as refused:
            LocalPolicy(copy)
        return str(refused.value)

    assert "frame.onnx is not the file exported" in damaged(lambda d: (d / "frame.onnx").write_bytes(
        (d / "frame.onnx").read_bytes()[:1000]))  # half-copied
    assert "head.onnx is missing" in damaged(lambda d: (d / "head.onnx").unlink())
    assert "holds no policy.json" in damaged(lambda d: (d / "policy.json").unlink())
    assert "lists no checksum of frame.onnx" in damaged(lambda d: (d / "policy.json").write_text(json.dumps(
        {**(p := json.loads((d / "policy.json").read_text())), "files": {k: v for k, v in p["files"].items()
                                                                         if k != "frame.onnx"}})))
    assert "policy format 2, this vla_client reads format 1" in damaged(lambda d: (d / "policy.json").write_text(
        (d / "policy.json").read_text().replace('"format": 1', '"format": 2')))


def test_export_and_drive_from_the_command_line(exported, raw: Path, tmp_path: Path) -> None:
    run_dir, store_path, folder, settings = exported
    code, text = run("export", str(run_dir), "-o", str(folder))
    assert code == 1 and "exists already" in text
    out = tmp_path / "strict"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".strict.export-{dead.stdout.strip()}.tmp").mkdir()  # what an export killed half-way leaves
    code, text = run("export", str(run_dir), "-o", str(out), "--min-cosine", "1", "--max-chunk-error", "1e-12")
    assert code == 1 and "is not the policy" in text and "nothing published" in text, text
    assert "a `export` killed half-way left it" in text
    assert list(tmp_path.iterdir()) == []  # neither the folder, nor its temporary, nor the dead export's
    code, text = run("export", str(run_dir), "-o", str(out), "--precision", "bf16")
    assert code == 2 and "export fp32 or fp16" in text
    episode = Path(next(r for r in open_store(store_path).records() if r.split == "val").source_path)
    code, text = run("drive", str(episode), "--policy", str(folder), "--execution", "first", "--json", *CAMERAS)
    assert code == 0, text
    report = json.loads(text[text.index("{"):])
    recorded = read_recorded(episode, settings)
    runner = Policy.from_checkpoint(run_dir, "cpu").runner(recorded.color_orders)
    runner.reset(report["instruction"])
    want = [runner.step({c: f[t] for c, f in recorded.frames.items()})[0] for t in range(len(recorded.actions))]
    np.testing.assert_allclose(np.asarray(report["commands"]), np.stack(want), atol=1e-4)
    assert report["url"] == str(folder) and report["stops"] == 0 and report["steps"] == len(want)
