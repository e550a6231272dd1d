"""vla-data view: recordings read back with Rerun's own reader (``rerun.chunk.RrdReader``): the entity paths, the
frames per episode, the action values and instruction of the store, a raw BGR episode's red bottle red, the
predictions equal to ``Policy.episode_chunks``; bad input is one clear error; --serve serves the web viewer."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rerun.chunk import RrdReader

from conftest import SMALL, Start, run_cli
from vla_data.store.reader import open_store
from vla_model.runtime import Policy

CLI = [sys.executable, "-m", "pipelines.cli"]


class Recording:
    """An .rrd file as Rerun's reader gives it: per entity path, its static row and its rows in timeline order
    (``frame``, or ``window`` for a training sample)."""

    def __init__(self, path: Path) -> None:
        self.static: dict[str, dict] = {}
        self.rows: dict[str, list[dict]] = defaultdict(list)
        for chunk in RrdReader(path).stream():
            batch = chunk.to_record_batch().to_pylist()
            if chunk.is_static:
                for row in batch:
                    self.static.setdefault(chunk.entity_path, {}).update(row)
            else:
                self.rows[chunk.entity_path] += batch
        for rows in self.rows.values():
            rows.sort(key=self.step)

    @staticmethod
    def step(row: dict) -> int:
        return row["frame"] if "frame" in row else row["window"]

    def entities(self, prefix: str) -> set[str]:
        return {p[len(prefix):] for p in set(self.rows) | set(self.static) if p.startswith(prefix)}

    def series(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rows[path]
        return np.array([self.step(r) for r in rows]), np.array([r["Scalars:scalars"][0] for r in rows])

    def images(self, path: str) -> list[np.ndarray]:
        out = []
        for r in self.rows[path]:
            if "EncodedImage:blob" in r:
                out.append(np.asarray(Image.open(io.BytesIO(bytes(r["EncodedImage:blob"][0]))).convert("RGB")))
            else:
                fmt = r["Image:format"][0]
                out.append(np.asarray(r["Image:buffer"][0], np.uint8).reshape(fmt["height"], fmt["width"], 3))
        return out

    @staticmethod
    def layout(path: Path) -> set[tuple[str, str]]:
        """The (name, origin) of every view of the recording's blueprint (its layout for the viewer)."""
        reader = RrdReader(path)
        (blueprint,) = reader.blueprints()
        return {(row["ViewBlueprint:display_name"][0], row["ViewBlueprint:space_origin"][0])
                for chunk in reader.stream(store=blueprint) for row in chunk.to_record_batch().to_pylist()
                if "ViewBlueprint:space_origin" in row}

    def text(self, path: str) -> str:
        return self.static[path]["TextDocument:text"][0]


@pytest.fixture(scope="module")
def small_store(clean_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("view") / "ds.zarr"
    assert run_cli("build-splits", str(clean_dir), "-o", str(out), "--image-size", "32")[0] == 0
    return out


def test_a_store_recording_holds_each_episode_as_stored(small_store: Path, tmp_path: Path) -> None:
    rrd = tmp_path / "all.rrd"
    code, text = run_cli("view", str(small_store), "--images", "raw", "--save", str(rrd))
    store = open_store(small_store)
    assert code == 0 and f"wrote {rrd} ({len(store.episodes)} episode(s)" in text, text
    assert not list(tmp_path.glob(".all.rrd.*"))
    rec = Recording(rrd)
    names = list(store.manifest.actions.names)
    for row in store.episodes.itertuples():
        root = f"/episodes/e{row.episode}/"
        assert rec.entities(root) == {"info", "instruction", "camera/rgb"} | {f"action/{n}" for n in names}
        a, b = store.episode_range(row.episode)
        shown = rec.images(root + "camera/rgb")
        assert len(shown) == row.n_frames == b - a
        np.testing.assert_array_equal(np.stack(shown), store.camera("rgb")[a:b])  # exactly the stored frames
        for i, name in enumerate(names):
            frames, values = rec.series(root + f"action/{name}")
            assert frames.tolist() == list(range(row.n_frames))
            np.testing.assert_allclose(values, store.action[a:b][:, i], rtol=0, atol=1e-6)  # physical units
        assert rec.text(root + "instruction").startswith(row.instruction)
        assert f"source: {row.instruction_source}" in rec.text(root + "instruction")
        info = rec.text(root + "info")
        assert f"**split**: {row.split}" in info and f"**scenario**: {row.scenario}" in info
        assert f"**frames**: {row.n_frames}" in info
    layout = Recording.layout(rrd)  # one camera view, one plot per channel and the texts, per episode
    for row in store.episodes.itertuples():
        root = f"/episodes/e{row.episode}"
        assert {("rgb (model)", f"{root}/camera/rgb"), ("info", f"{root}/info")} <= layout
        assert {(n, root) for n in names} <= layout


def test_jpeg_frames_are_small_and_close_and_a_split_or_episode_can_be_chosen(small_store: Path,
                                                                               tmp_path: Path) -> None:
    store = open_store(small_store)
    val = store.episodes[store.episodes["split"] == "val"]
    code, text = run_cli("view", str(small_store), "--split", "val", "--save", str(tmp_path / "val.rrd"))
    assert code == 0, text
    rec = Recording(tmp_path / "val.rrd")
    assert {p.split("/")[2] for p in rec.rows} == {f"e{e}" for e in val["episode"]}
    first = int(val["episode"].iloc[0])
    a, b = store.episode_range(first)
    assert "EncodedImage:blob" in rec.rows[f"/episodes/e{first}/camera/rgb"][0]
    shown = np.stack(rec.images(f"/episodes/e{first}/camera/rgb")).astype(int)
    assert np.abs(shown - store.camera("rgb")[a:b]).mean() < 12  # JPEG: close, not exact

    source = Path(store.episodes["source_path"].iloc[2]).name  # by file name, with or without .h5
    for asked in (source, source.removesuffix(".h5"), "2"):
        code, text = run_cli("view", str(small_store), "--episode", asked, "--save", str(tmp_path / "one.rrd"))
        assert code == 0, text
        assert {p.split("/")[2] for p in Recording(tmp_path / "one.rrd").rows} == {"e2"}
    url = small_store.resolve().as_uri()  # the store by URL reads the same
    assert run_cli("view", url, "--max-episodes", "2", "--save", str(tmp_path / "two.rrd"))[0] == 0
    assert {p.split("/")[2] for p in Recording(tmp_path / "two.rrd").rows} == {"e0", "e1"}


def test_a_raw_bgr_episode_is_shown_as_recorded_with_its_red_bottle_red(clean_dir: Path, tmp_path: Path) -> None:
    episode = sorted(clean_dir.glob("*.h5"))[0]
    rrd = tmp_path / "raw.rrd"
    code, text = run_cli("view", str(episode), "--images", "raw", "--save", str(rrd))
    assert code == 0, text
    rec = Recording(rrd)
    root = f"/episodes/{episode.stem}/"
    n = len(rec.images(root + "recorded/rgb"))
    assert f"(1 episode(s), {n} frames)" in text  # the recorded and the model view: one frame each, counted once
    assert {"camera/rgb", "recorded/rgb", "info", "instruction"} <= rec.entities(root)
    recorded = np.stack(rec.images(root + "recorded/rgb"))
    assert recorded.shape[1:] == (SMALL["height"], SMALL["width"], 3)
    red = (recorded[..., 0] > 150) & (recorded[..., 2] < 80)
    assert red.any() and not ((recorded[..., 2] > 150) & (recorded[..., 0] < 80)).any()  # red, never blue
    assert rec.images(root + "camera/rgb")[0].shape == (224, 224, 3)  # as a default build would store it
    assert "## findings" in rec.text(root + "info") and "**kind**: hdf5" in rec.text(root + "info")


def test_predictions_beside_the_truth_equal_the_policys_chunks(learn_store: Path, trained_run: Path,
                                                               tmp_path: Path) -> None:
    store = open_store(learn_store)
    episode = int(store.episodes[store.episodes["split"] == "val"]["episode"].iloc[0])
    rrd = tmp_path / "pred.rrd"
    code, text = run_cli("view", str(learn_store), "--episode", str(episode), "--run", str(trained_run),
                         "--save", str(rrd))
    assert code == 0, text
    policy = Policy.from_checkpoint(trained_run, "cpu")
    a, b = store.episode_range(episode)
    row = store.episodes.iloc[episode]
    chunks = policy.episode_chunks({"rgb": np.asarray(store.camera("rgb")[a:b])}, row["instruction"])
    actions, o, k = np.asarray(store.action[a:b]), policy.spec.action_offset, policy.chunk
    rec = Recording(rrd)
    root = f"/episodes/e{episode}/"
    for i, name in enumerate(policy.action_names):
        frames, first = rec.series(root + f"predicted/{name}")
        assert frames.tolist() == list(range(b - a))
        np.testing.assert_allclose(first, chunks[:, 0, i], atol=1e-5)
        frames, error = rec.series(root + f"error/{name}")  # where a recorded row t+o exists
        assert frames.tolist() == [t for t in range(b - a) if t + o < b - a]
        np.testing.assert_allclose(error, chunks[frames, 0, i] - actions[frames + o, i], atol=1e-5)
        for t in (0, b - a - 1):  # the whole chunk, as a curve from t+o on
            frames, values = rec.series(root + f"chunk/{name}/t{t:04d}")
            assert frames.tolist() == list(range(t + o, t + o + k))
            np.testing.assert_allclose(values, chunks[t, :, i], atol=1e-5)


def test_bad_inputs_are_one_clear_error(small_store: Path, learn_store: Path, trained_run: Path,
                                        tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("not an episode")
    rrd = str(tmp_path / "x.rrd")
    cases = [
        (["view", str(notes), "--save", rrd], "neither a vla-data store nor a recorder episode"),
        (["view", str(tmp_path / "missing"), "--save", rrd], "does not exist"),
        (["view", str(small_store), "--episode", "99", "--save", rrd], "has no episode 99"),
        (["view", str(small_store), "--run", str(trained_run), "--save", rrd], "does not fit this store"),
    ]
    for args, message in cases:
        code, text = run_cli(*args)
        assert code == 1 and message in text and "Traceback" not in text, (args, text)
    assert not Path(rrd).exists() and not list(tmp_path.glob(".x.rrd.*"))
    assert run_cli("view", str(small_store), "--save", rrd, "--serve")[0] == 2
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([*CLI, "view", str(small_store)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "--save FILE.rrd" in done.stderr and "--serve" in done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_the_web_viewer_on_localhost_and_stops_on_ctrl_c(small_store: Path, start: Start) -> None:
    web, grpc = free_port(), free_port()
    proc = start([*CLI, "view", str(small_store), "--serve", "--web-port", str(web), "--grpc-port", str(grpc)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"open (http://127\.0\.0\.1:\d+/\S+)", line)
        assert url, line + proc.stderr.read()
        assert urllib.parse.unquote(url.group(1)).endswith(f"?url=rerun+http://127.0.0.1:{grpc}/proxy")
        with urllib.request.urlopen(url.group(1), timeout=30) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        socket.create_connection(("127.0.0.1", grpc), timeout=10).close()  # the recording's server is up
        twice = subprocess.run([*CLI, "view", str(small_store), "--serve", "--web-port", str(free_port()),
                                "--grpc-port", str(grpc)], capture_output=True, text=True, timeout=120)
        assert twice.returncode == 1 and f"port {grpc} is in use" in twice.stderr and "Traceback" not in twice.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err


def test_eval_rrd_holds_the_worst_val_episodes_by_first_action_mae(learn_store: Path, trained_run: Path,
                                                                   tmp_path: Path) -> None:
    out, rrd = tmp_path / "eval", tmp_path / "eval" / "worst.rrd"
    code, text = run_cli("eval", str(trained_run), str(learn_store), "-o", str(out), "--rrd", str(rrd),
                         "--rrd-episodes", "2")
    assert code == 0 and str(rrd) in text, text
    table = pd.read_csv(out / "per_episode.csv")
    policy = table[(table["predictor"] == "policy") & (table["horizon"] == "first")]
    mae = policy[[c for c in policy if c.startswith("mae_")]].mean(axis=1)
    worst = policy.assign(mae=mae).sort_values(["mae", "episode"], ascending=[False, True])["episode"].tolist()[:2]
    rec = Recording(rrd)
    assert {p.split("/")[2] for p in rec.rows} == {f"e{e}" for e in worst}
    assert "rank 1 of 2" in rec.text(f"/episodes/e{worst[0]}/info")
    assert f"{mae.max():.4f}" in rec.text(f"/episodes/e{worst[0]}/info")
    assert {"predicted/linear_x", "error/linear_x"} <= rec.entities(f"/episodes/e{worst[1]}/")


def test_a_bag_episode_has_a_time_timeline_of_its_frame_stamps(tmp_path: Path) -> None:
    from schemas.synthetic import SyntheticConfig
    from vla_data.synthetic.episodes import make_synthetic

    bags = tmp_path / "bags"
    make_synthetic(bags, SyntheticConfig(episodes=2, seed=2, format="rosbag2", **SMALL))
    rrd = tmp_path / "bags.rrd"
    code, text = run_cli("view", str(bags), "--images", "raw", "--save", str(rrd))
    assert code == 0, text
    rec = Recording(rrd)
    keys = {p.split("/")[2] for p in rec.rows}
    assert len(keys) == 2
    for key in keys:
        rows = rec.rows[f"/episodes/{key}/recorded/rgb"]
        stamps = np.array([r["time"] for r in rows], dtype="datetime64[ns]")
        assert len(rows) > 1 and (np.diff(stamps) > np.timedelta64(0, "ns")).all()  # one stamp per frame, rising
        recorded = np.stack(rec.images(f"/episodes/{key}/recorded/rgb"))
        assert ((recorded[..., 0] > 150) & (recorded[..., 2] < 80)).any()  # decoded to RGB: the bottle is red
        assert "**kind**: rosbag2" in rec.text(f"/episodes/{key}/info")


def test_a_training_sample_marks_its_pad_frames_and_padded_actions(small_store: Path, tmp_path: Path) -> None:
    from pipelines.inspect_sample import summarize_sample
    from schemas.sample import WindowSpec
    from vla_data.samples.dataset import WindowDataset

    rrd = tmp_path / "sample.rrd"
    ds = WindowDataset(small_store, "train", spec=WindowSpec(window=4, chunk=20))
    index = 1  # t=1 of the first episode: 2 pad frames before it; a chunk of 20 runs past its 18 frames
    code, text = run_cli("inspect-sample", str(small_store), "--index", str(index), "--window", "4", "--chunk", "20",
                         "--rrd", str(rrd))
    assert code == 0 and f"wrote {rrd}" in text, text
    summary, sample = summarize_sample(ds, index), ds[index]
    mask, chunk_mask = np.array(summary.frame_mask), np.array(summary.chunk_mask)
    assert (~mask).sum() == 2 and (~chunk_mask).any() and chunk_mask.any()
    rec, root = Recording(rrd), f"/samples/train-{index}/"
    frames = np.stack(rec.images(root + "camera/rgb"))
    window = sample["rgb"]["rgb"].numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(frames[mask], window[mask])  # real frames exactly as the model gets them
    assert (frames[~mask] != window[~mask]).any()  # pad frames greyed, never passing for real ones
    steps, values = rec.series(root + "frame_mask")
    assert steps.tolist() == list(range(4)) and values.tolist() == mask.astype(float).tolist()
    assert [r["window"] for r in rec.rows[root + "pad"]] == np.flatnonzero(~mask).tolist()
    actions = np.array(summary.actions)
    for j in (0, 19):
        name = summary.action_names[0]
        for kind, where in (("chunk", chunk_mask[:, j]), ("padded", ~chunk_mask[:, j])):
            if where.any():
                steps, values = rec.series(root + f"{kind}/{name}/k{j}")
                assert steps.tolist() == np.flatnonzero(where).tolist()
                np.testing.assert_allclose(values, actions[where, j, 0], atol=1e-6)


def test_episodes_with_errors_are_left_out_by_name_or_refused_when_asked_for(defect_dir: Path, tmp_path: Path) -> None:
    rrd = tmp_path / "d.rrd"
    code, text = run_cli("view", str(defect_dir), "--max-episodes", "50", "--save", str(rrd))
    assert code == 0 and "warning: left out" in text and "episode(s) with errors" in text, text
    from schemas import RecorderSettings, ValidateOptions
    from vla_data.sources.formats import find_sources
    from vla_data.validation.checks import validate

    report = validate(find_sources([defect_dir]), RecorderSettings(), ValidateOptions())
    shown = {p.split("/")[2] for p in Recording(rrd).rows}
    assert shown == {Path(r.path).stem for r in report.files if r.ok}  # warnings are shown, with their findings
    assert len(shown) < len(report.files) and any("defect" in name for name in shown)
    broken = sorted(defect_dir.glob("*defect_length_mismatch*.h5"))[0]
    code, text = run_cli("view", str(defect_dir), "--episode", broken.name, "--save", str(tmp_path / "b.rrd"))
    assert code == 1 and "cannot be shown" in text and "length_mismatch" in text, text


VIEW_PROBE = """
import sys
from pipelines.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    print("exit", exit.code, "torch" in sys.modules, "rerun" in sys.modules)
"""


@pytest.mark.parametrize("args", [["/no/such/episode.h5", "--save", "x.rrd"], [".", "--save", "x.rrd", "--serve"]])
def test_view_refuses_a_missing_source_or_bad_flags_before_loading_torch_or_rerun(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", VIEW_PROBE, "view", *args], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().split()[1:] in (["1", "False", "False"], ["2", "False", "False"]), done
    assert "does not exist" in done.stderr or "choose one" in done.stderr, done.stderr
