"""ROS 2 bags as sources: real bags written with rosbags (sqlite3 and MCAP), validated, built, mixed with HDF5.

Frames are the clock: a frame's action row is the last command at or before its stamp, zero before the first
command and after the command timeout (schemas.bags).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from rosbags.rosbag2 import StoragePlugin, Writer

from conftest import run_cli
from pipelines.cli import main
from pipelines.cli.flags import worded_hint
from schemas import FindingCode, RecorderSettings, Severity, SourceKind, ValidateOptions, ValidationReport
from schemas.evaluation import PredictReport
from schemas.bags import BagSettings, COMPRESSED_TYPE, IMAGE_TYPE, STRING_TYPE, TWIST_STAMPED_TYPE, TWIST_TYPE
from schemas.store import BuildOptions, Preprocessing, SplitConfig
from schemas.synthetic import SyntheticConfig
from vla_data.sources.bags import TYPESTORE, align_commands
from vla_data.build.job import build_store
from vla_data.sources.formats import find_sources
from vla_data.store.reader import DatasetStore, open_store
from vla_data.synthetic.episodes import Episode, simulate, write_episode
from vla_data.synthetic.bags import BagStyle, Storage, image_message, string_message, twist_message, write_bag
from vla_data.validation.checks import validate

S = 1_000_000_000  # ns per second
T0 = 1_700_000_000 * S
FIELDS = BagSettings().command_fields
PLUGINS = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
RNG = np.random.default_rng(0)


def frames(n: int, h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) RGB frames, each different, with a red left half (R > B) so a colour swap shows."""
    out = np.random.default_rng(seed).integers(0, 120, (n, h, w, 3), dtype=np.uint8)
    out[:, :, : w // 2, 0] = 250
    return out


def record(path: Path, messages: list[tuple[str, str, int, bytes]], storage: str = "sqlite3",
           custom: dict[str, str] | None = None, silent: tuple[tuple[str, str], ...] = ()) -> Path:
    """A bag of exactly ``messages`` (topic, type, receive time ns, CDR bytes), and the ``silent`` topics
    (topic, type) recorded without a message."""
    with Writer(path, version=9, storage_plugin=PLUGINS[storage]) as writer:
        connections = {topic: writer.add_connection(topic, kind, typestore=TYPESTORE) for topic, kind in silent}
        for topic, kind, _, _ in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, kind, typestore=TYPESTORE)
        for key, value in (custom or {}).items():
            writer.set_custom_data(key, value)
        for topic, _, at, raw in messages:
            writer.write(connections[topic], at, raw)
    return path


def camera(rgb: np.ndarray, stamps: list[int], topic: str = "/camera/image_raw", compressed: bool = False,
           encoding: str = "bgr8", receive: list[int] | None = None) -> list[tuple[str, str, int, bytes]]:
    kind = COMPRESSED_TYPE if compressed else IMAGE_TYPE
    return [(topic, kind, (receive or stamps)[i], image_message(rgb[i], stamps[i], compressed, encoding)[1])
            for i in range(len(stamps))]


def commands(rows: list[list[float]], stamps: list[int], topic: str = "/cmd_vel") -> list[tuple[str, str, int, bytes]]:
    fields = FIELDS if not rows or len(rows[0]) == 3 else FIELDS[: len(rows[0])]
    return [(topic, TWIST_TYPE, at, twist_message(np.asarray(row), fields)) for row, at in zip(rows, stamps, strict=True)]


def said(text: str, at: int = T0) -> list[tuple[str, str, int, bytes]]:
    return [("/instruction", STRING_TYPE, at, string_message(text))]


def check(path: Path, settings: RecorderSettings = RecorderSettings(), deep: bool = False):
    (report,) = validate(find_sources([path]), settings, ValidateOptions(deep=deep), root=str(path.parent)).files
    return report


def options(size: int = 8, **splits: object) -> BuildOptions:
    return BuildOptions(preprocessing=Preprocessing(image_size=size), splits=SplitConfig(**splits))


def build(bag: Path, out: Path, settings: RecorderSettings = RecorderSettings(), size: int = 8
          ) -> tuple[DatasetStore, slice]:
    """Build a store of ``bag`` and a companion bag (a store needs a train and a val episode): the store and
    ``bag``'s frames in it."""
    companion = out.parent / f"{out.stem}-companion"
    if not companion.exists():
        stamps = [T0 + i * S // 5 for i in range(3)]
        topics = settings.camera_topics
        record(companion, sum((camera(frames(3, seed=9), stamps, t) for t in topics.values()), []) +
               commands([[-1] * settings.action_dim, [1] * settings.action_dim], [T0, T0 + 1],
                        settings.bag.command_topic) + said("go"))
    build_store([bag, companion], out, options(size), settings)
    store = open_store(out)
    (episode,) = store.episodes.index[store.episodes["source_path"] == str(bag)]
    return store, slice(*store.episode_range(int(store.episodes["episode"][episode])))


# -- the alignment rule ---------------------------------------------------------------------------------------
def test_align_commands_at_its_edges() -> None:
    """Frame t's row is the last command at or before it (of equal stamps the later), zero before the first
    command and once the last command is older than the timeout."""
    f = np.array([0.8, 1.0, 1.2, 1.4, 1.6, 2.4]) * S
    c = np.array([0.9, 1.2, 1.25, 1.3, 1.3, 1.35]) * S
    rows = np.array([[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [5, 0, 0], [6, 0, 0]], np.float32)
    got = align_commands(f.astype(np.int64), c.astype(np.int64), rows, 0.5)[:, 0].tolist()
    assert got == [0, 1, 2, 6, 6, 0]
    assert align_commands(f.astype(np.int64), c.astype(np.int64), rows, 2.0)[:, 0].tolist() == [0, 1, 2, 6, 6, 6]
    equal = align_commands(np.array([1.3 * S], np.int64), np.array([1.3 * S, 1.3 * S], np.int64), rows[:2], 0.5)
    assert equal[:, 0].tolist() == [2]  # two commands at one stamp: the later in bag order


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_aligns_to_the_rule_and_builds(storage: str, tmp_path: Path) -> None:
    """Through a real bag: before the first command, a command exactly at a frame, several between frames, a
    timeout; the store holds exactly those rows, the episode table the bag, its topics and its time range."""
    stamps = [T0 + int(x * S) for x in (0.8, 1.0, 1.2, 1.4, 1.6, 2.4)]
    sent = [T0 + int(x * S) for x in (0.9, 1.2, 1.25, 1.3, 1.35)]
    rows = [[1.15, 0, 0], [0, 1.15, 0], [0, -1.15, 0], [1.15, 1.15, 0], [-1.15, 0, 0.5]]
    rgb = frames(6)
    bag = record(tmp_path / "src" / "run_1box_hori_left", camera(rgb, stamps) + commands(rows, sent), storage)
    report = check(bag)
    assert report.ok and report.kind == SourceKind.rosbag2 and report.n_frames == 6 and report.frame_size == (12, 16)
    assert report.instruction_source.value == "file_name"  # no topic, no metadata, no CSV: the bag's name
    assert [f.code for f in report.findings if f.severity == Severity.warning] == [FindingCode.short_episode,
                                                                                  FindingCode.dropped_frames]
    store, frames_of = build(bag, tmp_path / "ds.zarr")
    expected = np.array([[0, 0, 0], rows[0], rows[1], rows[4], rows[4], [0, 0, 0]], np.float32)
    assert np.array_equal(store.action[frames_of], expected)  # every channel varies, so all three are kept
    row = store.episodes[store.episodes["source_path"] == str(bag)].iloc[0]
    assert row["source_kind"] == "rosbag2" and row["source_topics"] == "/camera/image_raw;/cmd_vel"
    assert (int(row["start_ns"]), int(row["stop_ns"])) == (stamps[0], stamps[-1])
    stored = store.camera("rgb")[frames_of]
    assert stored.shape == (6, 8, 8, 3) and (stored[:, :, :4, 0] > stored[:, :, :4, 2]).all()  # red stays red


def test_header_stamps_or_receive_times(tmp_path: Path) -> None:
    """The header stamp is the clock by default; --stamp receive uses the bag's receive times instead."""
    stamps = [T0 + int(x * S) for x in (1.0, 1.2, 1.4)]
    late = [s + int(0.15 * S) for s in stamps]  # the recorder got each frame 150 ms after it was grabbed
    bag = record(tmp_path / "b", camera(frames(3), stamps, receive=late) +
                 commands([[1, 0, 0], [0, 1, 0]], [T0 + int(1.1 * S), T0 + int(1.3 * S)]) + said("go"))
    store, at = build(bag, tmp_path / "header.zarr")
    assert store.action[at, :2].tolist() == [[0, 0], [1, 0], [0, 1]]
    store, at = build(bag, tmp_path / "receive.zarr", RecorderSettings(bag=BagSettings(stamp="receive")))
    assert store.action[at, :2].tolist() == [[1, 0], [0, 1], [0, 1]]


def test_twist_stamped_and_chosen_fields(tmp_path: Path) -> None:
    """TwistStamped commands by their header stamp; --command-fields picks and orders the action channels."""
    stamps = [T0 + i * S // 5 for i in range(4)]
    twist = TYPESTORE.types["geometry_msgs/msg/Twist"]
    vector, header = TYPESTORE.types["geometry_msgs/msg/Vector3"], TYPESTORE.types["std_msgs/msg/Header"]
    time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    stamped = []
    for i, at in enumerate(stamps[1:], 1):
        msg = TYPESTORE.types[TWIST_STAMPED_TYPE](
            header=header(stamp=time(sec=at // S, nanosec=at % S), frame_id="base"),
            twist=twist(linear=vector(x=float(i), y=0.0, z=0.0), angular=vector(x=0.0, y=0.0, z=-float(i))))
        stamped.append(("/cmd_vel", TWIST_STAMPED_TYPE, at + S, TYPESTORE.serialize_cdr(msg, TWIST_STAMPED_TYPE)))
    bag = record(tmp_path / "b", camera(frames(4), stamps) + stamped + said("go"))  # received 1 s late
    settings = RecorderSettings(action_dim=2, bag=BagSettings(command_fields=("angular.z", "linear.x")))
    store, at = build(bag, tmp_path / "ds.zarr", settings)
    assert store.action[at].tolist() == [[0, 0], [-1, 1], [-2, 2], [-3, 3]]
    assert store.manifest.actions.names == ["linear_x", "linear_y"]  # named by position, as for HDF5


# -- the same episode from a file and from a bag ------------------------------------------------------------------
def _episode(index: int, size: tuple[int, int] = (24, 40)) -> Episode:
    config = SyntheticConfig(episodes=1, height=size[0], width=size[1], seed=index)
    from datetime import datetime

    return simulate(np.random.default_rng(index), index, datetime(2025, 11, 6, 9), config)


def test_an_h5_episode_and_its_bag_build_identical_stores(tmp_path: Path) -> None:
    """The same frames (Image bgr8 in the bag, BGR in the file) and commands: the same stored frames, actions,
    episode ends and train stats; only the episode table says where each came from."""
    episodes = [_episode(i) for i in range(3)]
    for ep in episodes:
        write_episode(tmp_path / "h5" / f"{ep.name}.h5", ep)
        write_bag(tmp_path / "bags" / ep.name, [ep.frames], ep.actions, ep.instruction, BagStyle())
    splits = ["train", "val", "train"]
    built = {}
    for kind, suffix in (("h5", ".h5"), ("bags", "")):
        rows = [{"episode": f"{ep.name}{suffix}", "split": split} for ep, split in zip(episodes, splits, strict=True)]
        pd.DataFrame(rows).to_csv(tmp_path / f"{kind}.csv", index=False)
        opts = options(16).model_copy(update={"splits": SplitConfig(split_file=str(tmp_path / f"{kind}.csv"))})
        build_store([tmp_path / kind], tmp_path / f"{kind}.zarr", opts, RecorderSettings())
        built[kind] = open_store(tmp_path / f"{kind}.zarr")
    h5, bags = built["h5"], built["bags"]
    assert np.array_equal(h5.camera("rgb")[:], bags.camera("rgb")[:])
    assert np.array_equal(h5.action[:], bags.action[:]) and np.array_equal(h5.episode_ends, bags.episode_ends)
    assert h5.manifest.stats == bags.manifest.stats and h5.manifest.actions == bags.manifest.actions
    assert list(h5.episodes["n_frames"]) == list(bags.episodes["n_frames"])
    assert set(bags.episodes["source_kind"]) == {"rosbag2"} and set(h5.episodes["source_kind"]) == {"hdf5"}


def test_bags_and_h5_files_in_one_build(tmp_path: Path) -> None:
    """A folder holding HDF5 files and bags of both storages and both image types builds one store; a second
    build adds a new bag and keeps the rest; a bag changed since is refused like a changed file."""
    src = tmp_path / "src"
    eps = [_episode(i) for i in range(5)]
    write_episode(src / f"{eps[0].name}.h5", eps[0])
    for i, ep in enumerate(eps[1:4]):
        write_bag(src / "bags" / ep.name, [ep.frames], ep.actions, ep.instruction,
                  BagStyle(storage=(Storage.sqlite3, Storage.mcap)[i % 2], compressed=i == 2))
    out = tmp_path / "ds.zarr"
    build_store([src], out, options(16, val_ratio=0.25), RecorderSettings())
    table = open_store(out).episodes
    assert sorted(table["source_kind"]) == ["hdf5", "rosbag2", "rosbag2", "rosbag2"]
    assert table["n_frames"].sum() == sum(len(e.actions) for e in eps[:4])
    write_bag(src / "bags" / eps[4].name, [eps[4].frames], eps[4].actions, eps[4].instruction, BagStyle())
    build_store([src], out, options(16, val_ratio=0.25), RecorderSettings())
    store = open_store(out)
    assert store.build_log().runs[-1].kept == 4 and store.build_log().runs[-1].added == [str(src / "bags" / eps[4].name)]
    assert dict(zip(store.episodes["source_path"], store.episodes["split"], strict=True)).items() >= dict(
        zip(table["source_path"], table["split"], strict=True)).items()  # stored episodes keep their split
    changed = src / "bags" / eps[1].name
    shutil.rmtree(changed)
    write_bag(changed, [eps[1].frames[::-1]], eps[1].actions, eps[1].instruction, BagStyle())
    code, out_text = run_cli("build-splits", str(src), "-o", str(out), "--image-size", "16", "--val-ratio", "0.25")
    assert code == 1 and "1 source(s) changed since" in out_text and eps[1].name in out_text


def test_build_splits_from_synthetic_bags_feeds_training(tmp_path: Path) -> None:
    """`make-synthetic --format rosbag2`, then the README's build-splits line, then a two-step train."""
    code, out = run_cli("make-synthetic", str(tmp_path / "bags"), "--episodes", "8", "--image-size", "24x40",
                        "--format", "rosbag2")
    assert code == 0, out
    bags = find_sources([tmp_path / "bags"])
    assert len(bags) == 8 and all(b.is_dir() for b in bags)
    assert {p.suffix for b in bags for p in b.iterdir()} == {".db3", ".mcap", ".yaml"}
    code, out = run_cli("validate", str(tmp_path / "bags"), "--json", str(tmp_path / "report.json"))
    assert code == 0, out
    code, out = run_cli("build-splits", str(tmp_path / "bags"), "-o", str(tmp_path / "ds.zarr"), "--image-size",
                        "56", "--camera-topic", "/camera/image_raw", "--command-topic", "/cmd_vel")
    assert code == 0, out
    table = open_store(tmp_path / "ds.zarr").episodes
    assert len(table) == 8 and {"topic", "metadata"} <= set(table["instruction_source"])
    code, out = run_cli("train", str(tmp_path / "ds.zarr"), "-o", str(tmp_path / "run"), "--max-steps", "2",
                        "--window", "2", "--chunk", "2", "--hidden", "16", "--lora-r", "2", "--batch-size", "4")
    assert code == 0, out
    # predict replays a bag as it replays the same episode's HDF5 file: the same predictions, the same rows
    ep = _episode(7, (24, 40))
    write_episode(tmp_path / "twin" / f"{ep.name}.h5", ep)
    write_bag(tmp_path / "twin" / ep.name, [ep.frames], ep.actions, ep.instruction, BagStyle(storage=Storage.mcap))
    reports = []
    for source in (tmp_path / "twin" / f"{ep.name}.h5", tmp_path / "twin" / ep.name):
        result = CliRunner().invoke(main, ["predict", str(tmp_path / "run"), str(source), "--json"])
        assert result.exit_code == 0, result.output
        reports.append(PredictReport.model_validate_json(result.stdout))
    h5, bag = reports
    assert len(bag.steps) == len(ep.actions) and [s.recorded for s in bag.steps] == [s.recorded for s in h5.steps]
    assert np.allclose([s.predicted for s in bag.steps], [s.predicted for s in h5.steps], atol=1e-5)


def test_a_single_mcap_file_is_a_source(tmp_path: Path) -> None:
    """An .mcap file on its own (no metadata.yaml beside it) is one bag."""
    bag = record(tmp_path / "b", camera(frames(3), [T0, T0 + S // 5, T0 + 2 * S // 5]) +
                 commands([[1, 0, 0]], [T0 + S // 10]) + said("reach the bottle"), "mcap")
    (single,) = bag.glob("*.mcap")
    (tmp_path / "loose").mkdir()
    shutil.copy(single, tmp_path / "loose" / "drive.mcap")
    report = check(tmp_path / "loose" / "drive.mcap")
    assert report.ok and report.n_frames == 3
    assert find_sources([tmp_path]) == [bag, tmp_path / "loose" / "drive.mcap"]  # a bag's own .mcap is not another


def test_fps_keeps_at_most_that_many_frames(tmp_path: Path) -> None:
    stamps = [T0 + i * S // 10 for i in range(10)]  # 10 Hz
    bag = record(tmp_path / "b", camera(frames(10), stamps) + commands([[1, 0, 0]] * 9, [s - 1 for s in stamps[1:]])
                 + said("go"))
    settings = RecorderSettings(bag=BagSettings(fps=5))
    assert check(bag, settings).n_frames == 5
    store, at = build(bag, tmp_path / "ds.zarr", settings)
    assert at.stop - at.start == 5


def test_two_cameras_of_a_bag(tmp_path: Path) -> None:
    """The first camera is the clock; the second gives its last frame at or before each clock frame."""
    stamps = [T0 + i * S // 5 for i in range(4)]
    side = frames(2, seed=5)
    bag = record(tmp_path / "b", camera(frames(4), stamps) +
                 camera(side, [stamps[0], stamps[2]], "/side/image_raw", encoding="rgb8") +
                 commands([[1, 0, 0]] * 3, [s - 1 for s in stamps[1:]]) + said("go"))
    settings = RecorderSettings(cameras=({"name": "front", "topic": "/camera/image_raw"},
                                         {"name": "side", "key": "side", "color_order": "rgb", "topic": "/side/image_raw"}))
    report = check(bag, settings)
    assert report.ok and report.frame_sizes == {"front": (12, 16), "side": (12, 16)}
    assert FindingCode.camera_rates_differ in {f.code for f in report.findings}
    store, at = build(bag, tmp_path / "ds.zarr", settings, size=16)
    stored = store.camera("side")[at]
    assert np.array_equal(stored[0], stored[1]) and np.array_equal(stored[2], stored[3])
    assert not np.array_equal(stored[1], stored[2])


# -- findings ---------------------------------------------------------------------------------------------------
def _good(tmp_path: Path, name: str = "good", **kw: object) -> Path:
    stamps = [T0 + i * S // 5 for i in range(4)]
    return record(tmp_path / name, camera(frames(4), stamps, **kw) + commands([[1, 0, 0]] * 3, [s - 1 for s in stamps[1:]])
                  + said("go"))


def _topic_missing(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    stamps = [T0 + i * S // 5 for i in range(3)]
    bag = record(tmp_path / "b", camera(frames(3), stamps, topic="/front/image_raw") + commands([[1, 0, 0]], [T0])
                 + said("go"))
    return bag, RecorderSettings(), "found /front/image_raw"


def _unsupported_type(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    bag = record(tmp_path / "b", said("not a picture") + commands([[1, 0, 0]], [T0]))
    settings = RecorderSettings(cameras=({"topic": "/instruction"},),
                                bag=BagSettings(instruction_topic="/say"))
    return bag, settings, "std_msgs/msg/String"


def _unsupported_encoding(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    stamps = [T0 + i * S // 5 for i in range(3)]
    messages = []
    for i, at in enumerate(stamps):
        msg = TYPESTORE.types[IMAGE_TYPE](
            header=TYPESTORE.types["std_msgs/msg/Header"](stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](
                sec=at // S, nanosec=at % S), frame_id="depth"),
            height=4, width=4, encoding="16UC1", is_bigendian=0, step=8, data=np.zeros(32, np.uint8))
        messages.append(("/camera/image_raw", IMAGE_TYPE, at, TYPESTORE.serialize_cdr(msg, IMAGE_TYPE)))
    return record(tmp_path / "b", messages + commands([[1, 0, 0]], [T0]) + said("go")), RecorderSettings(), "16UC1"


def _no_commands(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    stamps = [T0 + i * S // 5 for i in range(3)]
    bag = record(tmp_path / "b", camera(frames(3), stamps) + said("go"), silent=(("/cmd_vel", TWIST_TYPE),))
    return bag, RecorderSettings(), "/cmd_vel"


def _stamps_out_of_order(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    stamps = [T0, T0 + 2 * S // 5, T0 + S // 5, T0 + S // 5]  # one goes backwards, one repeats
    receive = [T0 + i * S // 5 for i in range(4)]
    bag = record(tmp_path / "b", camera(frames(4), stamps, receive=receive) + commands([[1, 0, 0]], [T0]) + said("go"))
    return bag, RecorderSettings(), "1 go backwards, 1 repeat"


def _dropped_frames(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    stamps = [T0 + i * S // 10 for i in (0, 1, 2, 3, 7, 8, 9)]  # frames 4..6 lost
    bag = record(tmp_path / "b", camera(frames(7), stamps) + commands([[1, 0, 0]] * 6, [s - 1 for s in stamps[1:]])
                 + said("go"))
    return bag, RecorderSettings(), "about 3 frame(s) missing"


def _camera_rates_differ(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    stamps = [T0 + i * S // 10 for i in range(6)]
    bag = record(tmp_path / "b", camera(frames(6), stamps) + camera(frames(3), stamps[::2], "/side/image_raw") +
                 commands([[1, 0, 0]] * 5, [s - 1 for s in stamps[1:]]) + said("go"))
    settings = RecorderSettings(cameras=({"name": "front"}, {"name": "side", "key": "side", "topic": "/side/image_raw"}))
    return bag, settings, "/camera/image_raw 10.0 Hz, /side/image_raw 5.0 Hz"


def _corrupt(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    bag = _good(tmp_path, "b")
    (db,) = bag.glob("*.db3")
    db.write_bytes(db.read_bytes()[:2000])  # a copy cut off
    return bag, RecorderSettings(), "cannot be read as a ROS 2 bag"


def _instruction_missing(tmp_path: Path) -> tuple[Path, RecorderSettings, str]:
    stamps = [T0 + i * S // 5 for i in range(3)]
    return record(tmp_path / "b", camera(frames(3), stamps) + commands([[1, 0, 0]], [T0])), RecorderSettings(), "--instruction"


BAG_FINDINGS = {
    FindingCode.topic_missing: _topic_missing,
    FindingCode.unsupported_message: _unsupported_type,
    FindingCode.no_commands: _no_commands,
    FindingCode.stamps_out_of_order: _stamps_out_of_order,
    FindingCode.dropped_frames: _dropped_frames,
    FindingCode.camera_rates_differ: _camera_rates_differ,
}
BAG_CODES = set(BAG_FINDINGS)


@pytest.mark.parametrize("make", [*BAG_FINDINGS.values(), _unsupported_encoding, _corrupt, _instruction_missing],
                         ids=lambda m: m.__name__.strip("_"))
def test_each_bag_finding(make, tmp_path: Path) -> None:
    """Each defective bag gets its finding (code, severity, a hint), and errors no other."""
    bag, settings, says = make(tmp_path)
    code = {"_unsupported_encoding": FindingCode.unsupported_message, "_corrupt": FindingCode.corrupt_file,
            "_instruction_missing": FindingCode.instruction_missing}.get(make.__name__) or next(
        c for c, m in BAG_FINDINGS.items() if m is make)
    report = check(bag, settings)
    hits = [f for f in report.findings if f.code == code]
    assert len(hits) == 1 and says in hits[0].message + worded_hint(hits[0]), report.findings
    assert (hits[0].hint or hits[0].fixes) and hits[0].file == str(bag)
    assert {f.code for f in report.findings if f.severity == Severity.error} <= {code}
    if hits[0].severity == Severity.error and settings == RecorderSettings():  # the CLI with default flags
        code_cli, out = run_cli("build-splits", str(bag), "-o", str(tmp_path / "ds.zarr"), "--image-size", "8")
        assert code_cli == 1 and code.value in out and not (tmp_path / "ds.zarr").exists()


def test_the_topic_hint_names_the_flag(tmp_path: Path) -> None:
    bag, _, _ = _topic_missing(tmp_path)
    (finding,) = check(bag).findings
    assert worded_hint(finding) == "pass --camera-topic /front/image_raw"
    code, out = run_cli("validate", str(bag), "--camera-topic", "/front/image_raw")
    assert code == 0, out


def test_deep_decodes_every_frame(tmp_path: Path) -> None:
    """--deep: a frozen camera (the same picture twice, new stamps) and a JPEG that does not decode."""
    stamps = [T0 + i * S // 5 for i in range(4)]
    rgb = frames(4)
    rgb[2] = rgb[1]
    frozen = record(tmp_path / "frozen", camera(rgb, stamps) + commands([[1, 0, 0]] * 3, [s - 1 for s in stamps[1:]])
                    + said("go"))
    assert FindingCode.frozen_camera not in {f.code for f in check(frozen).findings}
    (hit,) = [f for f in check(frozen, deep=True).findings if f.code == FindingCode.frozen_camera]
    assert "first at frame 2" in hit.message
    broken = camera(frames(4), stamps, compressed=True)
    msg = TYPESTORE.types[COMPRESSED_TYPE](header=TYPESTORE.deserialize_cdr(broken[3][3], COMPRESSED_TYPE).header,
                                           format="jpeg", data=np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8))
    broken[3] = (*broken[3][:3], TYPESTORE.serialize_cdr(msg, COMPRESSED_TYPE))
    bad = record(tmp_path / "bad", broken + commands([[1, 0, 0]] * 3, [s - 1 for s in stamps[1:]]) + said("go"))
    assert check(bad).ok
    assert FindingCode.corrupt_file in {f.code for f in check(bad, deep=True).findings}


def test_recorder_config_describes_bags(tmp_path: Path) -> None:
    """The bag settings travel in --recorder-config YAML too, and flags override them."""
    stamps = [T0 + i * S // 5 for i in range(3)]
    bag = record(tmp_path / "b", camera(frames(3), stamps, topic="/cam") + commands([[1, 0, 0]] * 2, stamps[1:], "/vel"))
    config = tmp_path / "recorder.yaml"
    config.write_text("cameras: [{name: rgb, topic: /cam}]\nbag: {command_topic: /vel}\n")
    code, out = run_cli("validate", str(bag), "--recorder-config", str(config), "--instruction", "go")
    assert code == 0, out
    code, out = run_cli("validate", str(bag), "--recorder-config", str(config), "--command-topic", "/cmd")
    assert code == 1 and "no topic /cmd; found /vel" in out
    code, out = run_cli("validate", str(bag), "--command-fields", "linear.q")
    assert code == 2 and "linear.q: not Twist fields" in out


def test_a_bag_is_never_modified_and_never_an_output(tmp_path: Path) -> None:
    """validate --deep and build-splits leave every byte of a bag as it was; an output inside a bag is refused."""
    bag = _good(tmp_path / "src", "b")
    before = {p: p.read_bytes() for p in bag.rglob("*") if p.is_file()}
    assert check(bag, deep=True).ok
    build(bag, tmp_path / "ds.zarr")
    assert {p: p.read_bytes() for p in bag.rglob("*") if p.is_file()} == before
    code, out = run_cli("build-splits", str(bag), "-o", str(bag / "ds.zarr"), "--image-size", "8")
    assert code == 1 and "inside" in out and not (bag / "ds.zarr").exists()
    assert {p: p.read_bytes() for p in bag.rglob("*") if p.is_file()} == before


# -- one bag, several episodes ------------------------------------------------------------------------------------
def _events(texts_at: list[tuple[str, int]]) -> list[tuple[str, str, int, bytes]]:
    return [("/episode_event", STRING_TYPE, at, string_message(text)) for text, at in texts_at]


def _long_bag(tmp_path: Path, extra: list[tuple[str, str, int, bytes]]) -> Path:
    """10 frames at 5 Hz; a command 20 ms before each from frame 1 on, except frames 5..7 (a 0.8 s pause)."""
    stamps = [T0 + i * S // 5 for i in range(10)]
    sent = [s - S // 50 for i, s in enumerate(stamps) if i >= 1 and i not in (5, 6, 7)]
    rows = [[float(i), 0, 0] for i in range(len(sent))]
    return record(tmp_path / "shift", camera(frames(10), stamps) + commands(rows, sent) + extra)


def test_a_bag_cut_by_events_gives_one_episode_per_start(tmp_path: Path) -> None:
    """episode_start .. episode_end, then a start that runs to the bag's end: two episodes, BAG#1 and BAG#2,
    each with its own instruction (said within it) and time range; frames outside any episode are no episode's."""
    stamps = [T0 + i * S // 5 for i in range(10)]
    bag = _long_bag(tmp_path, _events([("episode_start", stamps[0]), ("episode_end", stamps[3]),
                                       ("episode_start", stamps[5])])
                    + said("go left", stamps[1]) + said("go right", stamps[6]))
    settings = RecorderSettings(bag=BagSettings(cut="events"))
    reports = validate([bag], settings, ValidateOptions(), root=str(tmp_path)).files
    assert [r.path for r in reports] == [f"{bag}#1", f"{bag}#2"] and all(r.ok for r in reports)
    assert [r.n_frames for r in reports] == [4, 5] and [r.instruction for r in reports] == ["go left", "go right"]
    assert [(r.start_ns, r.stop_ns) for r in reports] == [(stamps[0], stamps[3]), (stamps[5], stamps[9])]
    out = tmp_path / "ds.zarr"
    build_store([bag], out, options(), settings)
    store = open_store(out)
    assert list(store.episodes["source_path"]) == [f"{bag}#1", f"{bag}#2"]
    assert list(store.episodes["n_frames"]) == [4, 5]
    assert store.action[:, 0].tolist() == [0, 0, 1, 2, 3, 3, 0, 4, 5]  # frame 5 sees command 3 (0.22 s old), 7 none
    again = build_store([bag], out, options(), settings)  # again: both episodes are recognised by their content
    assert again.unchanged and again.entry.added == [] and open_store(out).version == store.version
    code, text = run_cli("validate", f"{bag}#2", "--cut", "events")
    assert code == 0, text
    code, text = run_cli("validate", str(bag), "--cut", "events", "--events-topic", "/events")
    assert code == 1 and "no events topic /events; found /episode_event" in text


def test_a_bag_cut_at_pauses_in_the_commands(tmp_path: Path) -> None:
    """--cut gap: a pause longer than gap_s between two commands cuts the bag in its middle."""
    bag = _long_bag(tmp_path, said("go"))
    gap = RecorderSettings(bag=BagSettings(cut="gap", gap_s=0.6))
    reports = validate([bag], gap, ValidateOptions(), root=str(tmp_path)).files
    # the pause runs from the command before frame 4 to the one before frame 8 (0.78 s .. 1.58 s): cut at 1.18 s
    assert [r.n_frames for r in reports] == [6, 4] and [r.path for r in reports] == [f"{bag}#1", f"{bag}#2"]
    assert len(validate([bag], RecorderSettings(bag=BagSettings(cut="gap", gap_s=0.9)), ValidateOptions()).files) == 1
    single = check_file_of(f"{bag}#2", gap)
    assert single.ok and single.n_frames == 4
    whole = check_file_of(str(bag), gap)
    assert not whole.ok and "cut into 2 episodes" in whole.findings[0].message
    with pytest.raises(ValueError, match="longer than the command timeout"):
        BagSettings(cut="gap", gap_s=0.4)


def check_file_of(path: str, settings: RecorderSettings):
    """One episode's report, as predict and drive check it (a bag, or BAG#k)."""
    from vla_data.sources.instructions import InstructionIndex
    from vla_data.validation.checks import check_file

    return check_file(Path(path), settings, ValidateOptions(), InstructionIndex())


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "png"])
def test_every_image_encoding_stores_the_same_rgb(encoding: str, tmp_path: Path) -> None:
    """Image rgb8 / bgra8 and CompressedImage png of the same pictures store the frames an Image bgr8 bag
    stores; mono8 stores grey (three equal channels)."""
    stamps = [T0 + i * S // 5 for i in range(3)]
    rgb = frames(3)
    rest = commands([[1, 0, 0], [0, 1, 0]], [s - 1 for s in stamps[1:]]) + said("go")

    def msgs(kind: str) -> list[tuple[str, str, int, bytes]]:
        if kind == "png":
            from io import BytesIO

            from PIL import Image as PILImage

            out = []
            for i, at in enumerate(stamps):
                data = BytesIO()
                PILImage.fromarray(rgb[i]).save(data, format="PNG")
                msg = TYPESTORE.types[COMPRESSED_TYPE](
                    header=TYPESTORE.deserialize_cdr(image_message(rgb[i], at, True)[1], COMPRESSED_TYPE).header,
                    format="png", data=np.frombuffer(data.getvalue(), np.uint8))
                out.append(("/camera/image_raw", COMPRESSED_TYPE, at, TYPESTORE.serialize_cdr(msg, COMPRESSED_TYPE)))
            return out
        if kind == "bgra8":
            out = []
            for i, at in enumerate(stamps):
                bgra = np.concatenate([rgb[i][..., ::-1], np.full((*rgb.shape[1:3], 1), 7, np.uint8)], axis=2)
                header = TYPESTORE.deserialize_cdr(image_message(rgb[i], at, False)[1], IMAGE_TYPE).header
                msg = TYPESTORE.types[IMAGE_TYPE](header=header, height=12, width=16, encoding="bgra8", is_bigendian=0,
                                                  step=64, data=bgra.reshape(-1))
                out.append(("/camera/image_raw", IMAGE_TYPE, at, TYPESTORE.serialize_cdr(msg, IMAGE_TYPE)))
            return out
        return camera(rgb, stamps, encoding=kind)

    reference, at_reference = build(record(tmp_path / "bgr8", msgs("bgr8") + rest), tmp_path / "bgr8.zarr", size=16)
    other, at_other = build(record(tmp_path / encoding, msgs(encoding) + rest), tmp_path / f"{encoding}.zarr", size=16)
    assert np.array_equal(reference.camera("rgb")[at_reference], other.camera("rgb")[at_other])
    grey, at = build(record(tmp_path / "mono8", camera(rgb, stamps, encoding="mono8") + rest), tmp_path / "m.zarr", size=16)
    stored = grey.camera("rgb")[at]
    assert np.array_equal(stored[..., 0], stored[..., 1]) and np.array_equal(stored[..., 1], stored[..., 2])


def test_a_recording_not_finished_is_refused(tmp_path: Path) -> None:
    """`ros2 bag record` writes metadata.yaml last: FOLDER/FOLDER_0.mcap alone is a recording in progress (or
    killed), refused with the fix, not read as a shorter episode."""
    bag = _good(tmp_path, "drive")
    finished = record(tmp_path / "full", camera(frames(3), [T0, T0 + S // 5, T0 + 2 * S // 5]) +
                      commands([[1, 0, 0]], [T0]) + said("go"), "mcap")
    (finished / "metadata.yaml").unlink()  # as during recording: only the storage file
    (storage,) = finished.glob("*.mcap")
    storage.rename(finished / "full_0.mcap")
    report = check(finished / "full_0.mcap")
    assert not report.ok and "has not finished" in report.findings[0].message
    assert "ros2 bag reindex" in report.findings[0].hint
    assert check(bag).ok


def test_two_camera_synthetic_bags_read_with_the_flags_printed(tmp_path: Path) -> None:
    code, out = run_cli("make-synthetic", str(tmp_path / "bags"), "--episodes", "3", "--image-size", "24x40",
                        "--cameras", "2", "--format", "rosbag2")
    assert code == 0, out
    flags = out.strip().splitlines()[-1].removeprefix("read them with ").split()
    code, out = run_cli("validate", str(tmp_path / "bags"), *flags, "--json", str(tmp_path / "r.json"))
    assert code == 0, out
    report = ValidationReport.model_validate_json((tmp_path / "r.json").read_text())
    assert all(r.frame_sizes == {"front": (24, 40), "side": (24, 40)} for r in report.files) and len(report.files) == 3


def test_an_unfinished_sqlite3_recording_is_refused_beside_good_bags_and_alone(tmp_path: Path) -> None:
    """A bag folder holding only its .db3 (no metadata.yaml: `ros2 bag record` still running, or killed) is
    refused with the reindex hint, as an unfinished MCAP is, in a folder of good bags and given alone."""
    folder = tmp_path / "day"
    folder.mkdir()
    _good(folder, "a"), _good(folder, "b")
    unfinished = record(folder / "late", camera(frames(3), [T0, T0 + S // 5, T0 + 2 * S // 5]) +
                        commands([[1, 0, 0]], [T0]) + said("go"))
    (unfinished / "metadata.yaml").unlink()
    (storage,) = unfinished.glob("*.db3")
    storage.rename(unfinished / "late_0.db3")
    for target in (folder, unfinished, unfinished / "late_0.db3"):
        code, text = run_cli("validate", str(target))
        assert code == 1 and "has not finished" in text and "ros2 bag reindex" in text, (target, text)
    code, text = run_cli("build-splits", str(folder), "-o", str(tmp_path / "ds.zarr"), "--image-size", "8")
    assert code == 1 and "late_0.db3" in text and not (tmp_path / "ds.zarr").exists(), text


def test_a_single_bag_is_named_in_the_validate_table(tmp_path: Path) -> None:
    bag = _good(tmp_path, "drive_1box_hori_left")
    code, text = run_cli("validate", str(bag))
    assert code == 0 and "drive_1box_hori_left" in text and "\n.  " not in text and "| . " not in text, text
