"""`vla-data serve` and the robot-side client: a real websocket server on 127.0.0.1, talked to by the client."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from websockets.sync.client import connect

from conftest import Start
from pipelines.cli import main
from pipelines.serve import serving
from schemas.serve import ServeConfig
from schemas.train import Precision
from vla_client.client import PolicyClient, ServerError, Unauthorized
from vla_client.frames import FrameWarning
from vla_client.protocol import BAD_FRAME, MALFORMED, NOT_RESET, encoded, pack, unpack
from vla_model.runtime import Policy

LOCAL = ServeConfig(port=0)


@pytest.fixture(scope="module")
def served_run(learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("served") / "run"
    result = CliRunner().invoke(main, ["train", str(learn_store), "-o", str(run_dir), "--model", "tiny-random",
                                       "--max-steps", "2", "--window", "4", "--chunk", "3", "--batch-size", "4",
                                       "--hidden", "16", "--lora-r", "2", "--val-every", "2", "--save-every", "2",
                                       "--val-batches", "1"])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def policy(served_run: Path) -> Policy:
    return Policy.from_checkpoint(served_run, "cpu")


def _episode(learn_store: Path, index: int = 0) -> tuple[np.ndarray, str]:
    path = sorted((learn_store.parent / "raw").glob("*.h5"))[index]
    with h5py.File(path) as f:
        return f["images"][()], "Navigate around obstacles and reach the front of the beverage bottle on the left"


def test_served_chunks_equal_the_runners(policy: Policy, learn_store: Path) -> None:
    frames, instruction = _episode(learn_store)
    runner = policy.runner()
    runner.reset(instruction)
    with serving(policy, LOCAL) as server:
        client = PolicyClient(server.url)
        meta = client.metadata
        assert meta["cameras"] == ["rgb"] and meta["window"] == 4 and meta["chunk"] == 3
        assert meta["action_names"] == ["linear_x", "linear_y"] and meta["color_orders"] == {"rgb": "bgr"}
        assert meta["protocol"] == 1 and meta["precision"] == "fp32"
        client.reset(instruction)
        for frame in frames:
            served, timing = client.step_timed(frame)
            np.testing.assert_allclose(served, runner.step(frame), atol=1e-5)
            assert served.shape == (3, 2) and served.dtype == np.float32 and timing["total"] >= timing["policy"] > 0
        client.close()


def test_jpeg_and_png_frames_decode_into_the_cameras_colour_order(policy: Policy, learn_store: Path) -> None:
    frames, instruction = _episode(learn_store, 1)
    rgb = np.ascontiguousarray(frames[0][..., ::-1])  # the collector stores BGR
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")  # lossless: the same pixels
    with serving(policy, LOCAL) as server:
        client = PolicyClient(server.url)
        client.reset(instruction)
        raw = client.step(frames[0])
        client.reset(instruction)
        np.testing.assert_allclose(client.step(encoded("png", png.getvalue())), raw, atol=1e-6)
        jpeg = io.BytesIO()
        Image.fromarray(rgb).save(jpeg, format="JPEG", quality=95)
        client.reset(instruction)
        assert np.abs(client.step(encoded("jpeg", jpeg.getvalue())) - raw).max() < 0.5  # lossy, same scene
        with pytest.raises(ServerError) as bad:
            client.step(encoded("jpeg", b"not a jpeg"))
        assert bad.value.code == BAD_FRAME and "cannot decode" in str(bad.value)


def test_every_bad_message_gets_an_error_and_the_connection_stays_usable(policy: Policy, learn_store: Path) -> None:
    frames, instruction = _episode(learn_store)
    with serving(policy, LOCAL) as server, connect(server.url, compression=None, proxy=None) as ws:
        def ask(data: bytes | str) -> dict:
            ws.send(data)
            return unpack(ws.recv(timeout=10))

        assert ask(pack({"type": "step", "frames": {"rgb": frames[0]}})) == {
            "type": "error", "code": NOT_RESET, "message": "step before reset: send reset with the instruction first"}
        assert ask(b"\xc1 not msgpack")["code"] == MALFORMED
        assert ask("a text frame")["code"] == MALFORMED
        assert ask(pack([1, 2, 3]))["code"] == MALFORMED
        assert ask(pack({"type": "dance"}))["code"] == MALFORMED
        assert ask(pack({"type": "reset"}))["code"] == "bad_request"
        assert ask(pack({"type": "reset", "instruction": instruction})) == {"type": "reset"}
        assert ask(pack({"type": "step", "frames": {"rgb": frames[0][..., :2]}}))["code"] == BAD_FRAME
        assert ask(pack({"type": "step", "frames": {"rgb": frames[0].astype(np.float32)}}))["code"] == BAD_FRAME
        empty = ask(pack({"type": "step", "frames": {"rgb": np.zeros((0, 5, 3), np.uint8)}}))
        assert empty["code"] == BAD_FRAME and "a 0x5 frame is smaller than the policy reads" in empty["message"]
        wrong = ask(pack({"type": "step", "frames": {"front": frames[0]}}))
        assert wrong["code"] == BAD_FRAME and "camera(s) rgb" in wrong["message"]
        assert ask(pack({"type": "step", "frames": {"rgb": frames[0]}, "timestamp": 7.5}))["type"] == "chunk"
        assert ask(pack({"type": "close"})) == {"type": "close"}


def test_a_vanished_client_frees_its_runner_and_others_go_on(policy: Policy, learn_store: Path) -> None:
    frames, instruction = _episode(learn_store)
    with serving(policy, LOCAL) as server:
        gone = PolicyClient(server.url)
        gone.reset(instruction)
        gone._connection.socket.close()  # type: ignore[union-attr]  # the robot loses power mid-episode
        client = PolicyClient(server.url)
        client.reset(instruction)
        assert client.step(frames[0]).shape == (3, 2)
        deadline = time.time() + 10
        while server.server.connections != 1 and time.time() < deadline:
            time.sleep(0.05)
        assert server.server.connections == 1


def test_eight_robots_at_once_each_complete_an_episode(policy: Policy, learn_store: Path) -> None:
    frames, left = _episode(learn_store)
    instructions = [left, left.replace("left", "right")]  # robots with other instructions share backbone calls
    want = {}
    for instruction in instructions:
        runner = policy.runner()
        runner.reset(instruction)
        want[instruction] = np.stack([runner.step(f) for f in frames[:6]])
    results: dict[int, np.ndarray] = {}

    def robot(i: int) -> None:
        with PolicyClient(server.url) as client:
            client.reset(instructions[i % 2])
            results[i] = np.stack([client.step(f) for f in frames[:6]])

    with serving(policy, LOCAL) as server:
        threads = [threading.Thread(target=robot, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        batches = server.server.batches
    assert sorted(results) == list(range(8))
    for i, chunks in results.items():  # each robot its own runner: the same chunks as one runner alone
        np.testing.assert_allclose(chunks, want[instructions[i % 2]], atol=1e-5)
    assert sum(batches) == 8 * 6 and max(batches) > 1  # steps that arrived together went through as one call


def test_a_token_is_required_beyond_localhost_and_checked(policy: Policy, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token_file"):
        ServeConfig(host="0.0.0.0")
    assert ServeConfig(host="0.0.0.0", insecure=True).insecure
    with serving(policy, LOCAL, token="s3cret") as server:
        with pytest.raises(Unauthorized, match="refused the token"):
            PolicyClient(server.url, token="wrong")
        with pytest.raises(Unauthorized):
            PolicyClient(server.url)
        assert PolicyClient(server.url, token="s3cret").metadata["cameras"] == ["rgb"]


def test_the_client_reconnects_and_resends_the_instruction(policy: Policy, learn_store: Path) -> None:
    frames, instruction = _episode(learn_store)
    with serving(policy, LOCAL) as server:
        client = PolicyClient(server.url)
        client.reset(instruction)
        client.step(frames[0])
        client._connection.close()  # type: ignore[union-attr]  # the link drops between two steps
        runner = policy.runner()
        runner.reset(instruction)
        np.testing.assert_allclose(client.step(frames[1]), runner.step(frames[1]), atol=1e-5)  # the window starts over
    with pytest.raises(ConnectionError, match="cannot reach the policy server"):
        PolicyClient(server.url, reconnects=1, retry_delay=0.01, timeout=1)


def test_bf16_backbone_on_the_cpu_is_close_to_fp32(served_run: Path, learn_store: Path) -> None:
    frames, instruction = _episode(learn_store)
    fp32, bf16 = Policy.from_checkpoint(served_run, "cpu"), Policy.from_checkpoint(served_run, "cpu", precision="bf16")
    assert bf16.model.backbone.dtype == torch.bfloat16 and bf16.precision == Precision.bf16
    a, b = fp32.runner(), bf16.runner()
    a.reset(instruction), b.reset(instruction)
    diffs = [np.abs(a.step(f) - b.step(f)).max() for f in frames[:5]]
    assert max(diffs) < 0.2 and max(diffs) > 0  # another precision, nearly the same chunks
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        fp32.set_precision(Precision.fp16)
    said: list[str] = []
    assert not fp32.compile(said.append) and "running eager on the CPU" in said[0]


def test_the_client_imports_neither_torch_nor_transformers() -> None:
    probe = ("import sys, vla_client.client, vla_client.protocol; "
             "print(sorted(m for m in ('torch', 'transformers', 'pydantic', 'vla_data', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_serve_command_serves_until_ctrl_c(served_run: Path, tmp_path: Path, start: Start) -> None:
    port = _free_port()
    proc = start([sys.executable, "-m", "pipelines.cli", "serve", str(served_run), "--port", str(port), "--device", "cpu"],
                 stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    line = ""
    deadline = time.time() + 120
    while "serving" not in line and time.time() < deadline:
        line = proc.stderr.readline()  # type: ignore[union-attr]
    assert f"ws://127.0.0.1:{port}" in line, line
    client = PolicyClient(f"ws://127.0.0.1:{port}")
    assert client.metadata["checkpoint"].endswith("checkpoint-2")
    client.close()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    code = CliRunner().invoke(main, ["serve", str(served_run), "--host", "0.0.0.0"])
    assert code.exit_code == 2 and "token_file" in code.output
    empty = tmp_path / "token"
    empty.write_text("\n")
    code = CliRunner().invoke(main, ["serve", str(served_run), "--host", "0.0.0.0", "--token-file", str(empty)])
    assert code.exit_code == 1 and "token file is empty" in code.output


@pytest.mark.parametrize("mode", ["ensemble", "async:2", "chunk:2"])
def test_an_episode_driven_through_the_server_and_stopped_when_it_goes(mode: str, policy: Policy,
                                                                        learn_store: Path) -> None:
    from vla_client.execution import Driver, ExecutionMode, Executor, Snap

    frames, instruction = _episode(learn_store)
    with serving(policy, LOCAL) as server:
        client = PolicyClient(server.url, timeout=2, reconnects=0)
        client.reset(instruction)
        driver = Driver(client, Executor(ExecutionMode.parse(mode), deadline=5.0, snap=Snap.from_metadata(client.metadata)))
        commands = []
        for frame in frames[:8]:
            commands.append(driver.tick(frame))
            driver.wait()
        levels = [client.metadata["action_levels"][n] for n in ("linear_x", "linear_y")]
        assert all(c.shape == (2,) and all(np.isclose(v, lv).any() for v, lv in zip(c, levels, strict=True))
                   for c in commands[1:])  # every command at a teleop level
        assert driver.errors == [] and driver.executor.stops <= 1  # only async's first tick waits for a chunk
    for frame in frames[8:12]:  # the server is gone: the robot stops, it does not keep the last command
        driver.executor.deadline = 0.0
        command = driver.tick(frame)
        driver.wait()
        assert not command.any()
    assert driver.errors


def actions_of(episode: Path) -> np.ndarray:
    with h5py.File(episode) as f:
        return f["actions"][()]


def record_png_bag(path: Path, rgb: list[np.ndarray], actions: np.ndarray, instruction: str) -> None:
    """A bag of the frames as CompressedImage png (lossless) and the actions as Twists, as write_bag times them."""
    import io

    from PIL import Image
    from rosbags.rosbag2 import Writer

    from schemas.bags import COMPRESSED_TYPE, TWIST_TYPE
    from vla_data.sources.bags import TYPESTORE
    from vla_data.synthetic.bags import COMMAND_LEAD_NS, START_NS, twist_message

    with Writer(path, version=9) as writer:
        camera = writer.add_connection("/camera/image_raw", COMPRESSED_TYPE, typestore=TYPESTORE)
        command = writer.add_connection("/cmd_vel", TWIST_TYPE, typestore=TYPESTORE)
        writer.set_custom_data("instruction", instruction)
        for t, frame in enumerate(rgb):
            at = START_NS + t * 200_000_000
            if t:
                writer.write(command, at - COMMAND_LEAD_NS, twist_message(actions[t], ("linear.x", "linear.y", "angular.z")))
            data = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(frame)).save(data, format="PNG")
            msg = TYPESTORE.types[COMPRESSED_TYPE](
                header=TYPESTORE.types["std_msgs/msg/Header"](
                    stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=at // 10**9, nanosec=at % 10**9),
                    frame_id="camera"), format="png", data=np.frombuffer(data.getvalue(), np.uint8))
            writer.write(camera, at, TYPESTORE.serialize_cdr(msg, COMPRESSED_TYPE))


def test_drive_replays_an_episode_through_a_server_as_the_robot_would(served_run: Path, policy: Policy,
                                                                       learn_store: Path, tmp_path: Path) -> None:
    episode = sorted((learn_store.parent / "raw").glob("*.h5"))[0]
    code = CliRunner().invoke(main, ["drive", str(episode), "--serve", str(served_run), "--execution", "first",
                                     "--json"])
    assert code.exit_code == 0, code.output
    report = json.loads(code.output)
    with h5py.File(episode) as f:
        frames, n = f["images"][()], len(f["actions"])
    runner = policy.runner()
    runner.reset(report["instruction"])
    want = [runner.step(frame)[0] for frame in frames]  # first: each tick executes the new chunk's first action
    np.testing.assert_allclose(np.asarray(report["commands"]), np.stack(want), atol=1e-5)
    assert report["steps"] == report["requests"] == n and report["stops"] == 0
    assert report["round_trip_ms"]["p50"] >= report["server_ms"]["p50"] > 0
    # the same episode recorded as a ROS 2 bag (CompressedImage png: lossless) drives to the same commands
    bag = tmp_path / episode.stem
    pictures = [frame[..., ::-1] for frame in frames]  # the file's BGR frames as RGB
    record_png_bag(bag, pictures, actions_of(episode), report["instruction"])
    code = CliRunner().invoke(main, ["drive", str(bag), "--serve", str(served_run), "--execution", "first", "--json"])
    assert code.exit_code == 0, code.output
    np.testing.assert_allclose(np.asarray(json.loads(code.output)["commands"]), np.stack(want), atol=1e-5)
    with serving(policy, LOCAL) as server:
        code = CliRunner().invoke(main, ["drive", str(episode), "--url", server.url, "--execution", "chunk:2"])
        assert code.exit_code == 0 and "(chunk:2)" in code.output and "command MAE" in code.output, code.output
        code = CliRunner().invoke(main, ["drive", str(episode), "--url", server.url, "--execution", "sometimes"])
        assert code.exit_code == 1 and "execution mode 'sometimes'" in code.output
    assert CliRunner().invoke(main, ["drive", str(episode)]).exit_code == 2
    code = CliRunner().invoke(main, ["drive", str(episode), "--url", "ws://127.0.0.1:9"])
    assert code.exit_code == 1 and "cannot reach the policy server" in code.output and "Traceback" not in code.output


def test_frames_the_policy_was_not_trained_on_are_refused_or_warned_of(policy: Policy, learn_store: Path,
                                                                      tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                      ) -> None:
    """Trained on 48x80 frames (aspect 1.67), resized to 56x56: a 1x1 frame or a portrait one is refused by the server
    (an error for that step) and, before sending, by the client; a 720p one (aspect 1.78, 7% off) is acted on
    with a warning; ``any_frame`` acts on anything, logged once per connection; drive warns and refuses likewise."""
    frames, instruction = _episode(learn_store)
    tiny, portrait, hd = (np.zeros(shape, np.uint8) for shape in ((1, 1, 3), (80, 48, 3), (720, 1280, 3)))
    with serving(policy, LOCAL) as server, connect(server.url, compression=None, proxy=None) as ws:
        def ask(message: dict) -> dict:
            ws.send(pack(message))
            return unpack(ws.recv(timeout=10))

        hello = ask({"type": "hello"})["metadata"]
        assert hello["source_frame_sizes"] == ["48x80"] and hello["image_size"] == 56 and not hello["any_frame"]
        assert hello["action_levels"] == {"linear_x": [0.0, 1.15], "linear_y": [-1.15, 0.0, 1.15]}  # for Snap
        ask({"type": "reset", "instruction": instruction})
        for frame, said in ((tiny, "a 1x1 frame is smaller than the policy reads (48 pixels on the short side"),
                            (portrait, "a 80x48 frame (aspect 0.60) is not the training camera's shape")):
            reply = ask({"type": "step", "frames": {"rgb": frame}})
            assert reply["code"] == BAD_FRAME and said in reply["message"] and "--any-frame" in reply["message"]
        assert ask({"type": "step", "frames": {"rgb": hd}})["type"] == "chunk"  # within 10%: acted on
        assert ask({"type": "step", "frames": {"rgb": frames[0]}})["type"] == "chunk"  # the connection goes on

        client = PolicyClient(server.url)
        client.reset(instruction)
        with pytest.raises(ValueError, match="camera rgb: a 1x1 frame is smaller"):
            client.step(tiny)
        with pytest.warns(FrameWarning, match=r"camera rgb: frames are 720x1280 \(aspect 1.78\), the policy was "
                          r"trained on 48x80 \(aspect 1.67\)") as warned:
            client.step(hd)
            client.step(hd)  # once per camera and size
            client.step(np.zeros((96, 160, 3), np.uint8))  # larger, the same aspect: nothing to say
        assert len(warned) == 1
        client.close()
    with caplog.at_level("WARNING", "vla-data.serve"), serving(policy, ServeConfig(port=0, any_frame=True)) as server:
        client = PolicyClient(server.url)
        assert client.metadata["any_frame"]
        client.reset(instruction)
        with pytest.warns(FrameWarning):  # the client still says so
            assert client.step(tiny).shape == client.step(portrait).shape == (3, 2)
        client.close()
    logged = [r.getMessage() for r in caplog.records if "--any-frame" in r.getMessage()]
    assert len(logged) == 1 and "a 1x1 frame is smaller" in logged[0]

    from schemas.synthetic import SyntheticConfig
    from vla_data.synthetic.episodes import make_synthetic

    for name, (height, width) in (("wide", (56, 88)), ("square", (48, 48))):
        make_synthetic(tmp_path / name, SyntheticConfig(episodes=1, height=height, width=width, seed=3))
    wide, square = (next((tmp_path / name).glob("*.h5")) for name in ("wide", "square"))
    with serving(policy, LOCAL) as server:
        code = CliRunner().invoke(main, ["drive", str(wide), "--url", server.url, "--json"])
        assert code.exit_code == 0, code.output
        assert "warning: camera rgb: frames are 56x88 (aspect 1.57)" in code.output
        assert json.loads(code.output[code.output.index("{"):])["warnings"][0].startswith("camera rgb: frames are 56x88")
        code = CliRunner().invoke(main, ["drive", str(square), "--url", server.url])
        assert code.exit_code == 1 and "camera rgb: a 48x48 frame (aspect 1.00) is not the training camera's" in code.output


def test_a_message_over_the_size_limit_closes_that_connection_only(policy: Policy, learn_store: Path) -> None:
    frames, instruction = _episode(learn_store)
    with serving(policy, ServeConfig(port=0, max_message_mb=0.5)) as server:
        with connect(server.url, compression=None, proxy=None, max_size=None) as ws:
            ws.send(pack({"type": "step", "frames": {"rgb": np.zeros((720, 1280, 3), np.uint8)}}))  # 2.7 MB
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=10)
            assert getattr(getattr(closed.value, "rcvd", None), "code", None) == 1009  # "message too big"
        client = PolicyClient(server.url)  # the server goes on
        client.reset(instruction)
        assert client.step(frames[0]).shape == (3, 2)


def test_eval_in_bf16_reports_how_far_it_is_from_fp32(served_run: Path, learn_store: Path, tmp_path: Path) -> None:
    code = CliRunner().invoke(main, ["eval", str(served_run), str(learn_store), "-o", str(tmp_path / "e"),
                                     "--precision", "bf16"])
    assert code.exit_code == 0 and "bf16 against fp32, the largest difference" in code.output, code.output
    gaps = json.loads((tmp_path / "e" / "metrics.json").read_text())["precision_max_abs_difference"]
    assert len(gaps) == 2 and all(0 < g < 0.2 for g in gaps)
    code = CliRunner().invoke(main, ["eval", str(served_run), str(learn_store), "-o", str(tmp_path / "f"),
                                     "--precision", "fp16"])
    assert code.exit_code == 1 and "fp16 needs a CUDA device" in code.output and not (tmp_path / "f").exists()
