from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vla_data.build.job import build_store
from schemas import RecorderSettings
from schemas.store import BuildOptions, Preprocessing, SplitConfig
from schemas.synthetic import SyntheticConfig
from vla_data.synthetic.episodes import Episode, make_synthetic, write_episode

SMALL = {"height": 24, "width": 40}
# the policy the training and evaluation tests train: tiny-random with a small head and LoRA
SMALL_MODEL = {"hidden": 64, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}


def run_cli(*args: str) -> tuple[int, str]:
    """`vla-data ARGS` in this process: the exit code and what it printed; an exception the CLI let escape
    (a traceback a user would see) fails the test."""
    from click.testing import CliRunner

    from pipelines.cli import main

    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


Start = Callable[..., subprocess.Popen]  # the ``start`` fixture


def _default_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start() -> Iterator[Start]:
    """``start(cmd, **popen_kwargs)``: a process for this test, as ``subprocess.Popen`` starts it, except that

    - SIGINT is at its default disposition in it (a suite run as a background job inherits SIGINT ignored,
      and the tests that press Ctrl-C send it);
    - it leads a process group of its own, and that group (its workers too) is killed when the test ends,
      however it ends: no test leaves a server or a build running.
    """
    started: list[subprocess.Popen] = []

    def popen(cmd: list[str], **kwargs: object) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, preexec_fn=_default_interrupt, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc

    yield popen
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended, and every process of its group with it
        proc.communicate()


@pytest.fixture
def umask_022() -> Iterator[int]:
    """The common umask 022 for one test, so files written as a plain open() would are 0644."""
    old = os.umask(0o022)
    yield 0o644
    os.umask(old)


def store_of(episodes: list[tuple[Episode, str]], src: Path, out: Path, image_size: int,
             settings: RecorderSettings = RecorderSettings(), **options: object) -> Path:
    """Write each (episode, split) into ``src`` as the recorder would and build the store ``out`` with exactly
    those splits (a split file); ``options``: further ``BuildOptions`` fields (action_channels, action_names)."""
    for episode, _ in episodes:
        write_episode(src / f"{episode.name}.h5", episode)
    rows = [{"episode": f"{episode.name}.h5", "split": split} for episode, split in episodes]
    pd.DataFrame(rows).to_csv(src / "splits.csv", index=False)
    build = BuildOptions.model_validate({"preprocessing": Preprocessing(image_size=image_size),
                                         "splits": SplitConfig(split_file=str(src / "splits.csv")), **options})
    build_store([src], out, build, settings)
    return out


# (frames, split, instruction): English side words, none at all, and Korean with particles attached
WORDED = [
    (5, "train", "Reach the bottle on the left"),
    (4, "train", "Drive up to the bottle"),
    (6, "train", "장애물을 피해 왼쪽에 있는 음료수 병 앞까지 이동"),
    (4, "val", "Reach the bottle on the right"),
]


@pytest.fixture(scope="session")
def worded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four short episodes of random frames and teleop actions whose instructions are ``WORDED``, at the
    tiny model's 56x56."""
    rng = np.random.default_rng(0)
    episodes = []
    for i, (n, split, instruction) in enumerate(WORDED):
        actions = np.zeros((n, 3), np.float32)
        actions[1:, :2] = rng.choice([-1.15, 0.0, 1.15], (n - 1, 2))
        frames = rng.integers(0, 256, (n, 12, 20, 3), dtype=np.uint8)
        name = f"episode_20251106_13{i:02d}00_1box_hori_left_core_medium"
        events = ["episode_start"] + ["start_action"] * (n - 1)
        episodes.append((Episode(name, frames, actions, events, instruction, {"num_frames": n}), split))
    return store_of(episodes, tmp_path_factory.mktemp("worded"), tmp_path_factory.mktemp("worded_store") / "w.zarr", 56)


@pytest.fixture(scope="session")
def clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight clean small episodes (some without in-file instruction), as the collector writes them."""
    out = tmp_path_factory.mktemp("clean")
    make_synthetic(out, SyntheticConfig(episodes=8, seed=3, **SMALL))
    return out


@pytest.fixture(scope="session")
def defect_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four clean episodes plus one defective file per finding class."""
    out = tmp_path_factory.mktemp("defects")
    make_synthetic(out, SyntheticConfig(episodes=4, seed=5, defects=True, **SMALL))
    return out


LEARN_BUILD = BuildOptions(preprocessing=Preprocessing(image_size=56), splits=SplitConfig(val_ratio=0.25))


@pytest.fixture(scope="session")
def learn_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 learnable synthetic episodes (48x80, in ``learn_store.parent / "raw"``), stored at the tiny model's
    56x56, a quarter of them val."""
    root = tmp_path_factory.mktemp("learn")
    make_synthetic(root / "raw", SyntheticConfig(episodes=64, height=48, width=80, seed=11))
    build_store([root / "raw"], root / "ds.zarr", LEARN_BUILD, RecorderSettings())
    return root / "ds.zarr"


def learned(learn_store: Path, out: Path, batching: dict, batch_size: int, head: str = "regression",
            steps: int = 800) -> Path:
    """The tiny policy (``head``) trained on ``learn_store`` until it has learned the task (W=2, K=4, mirror,
    ``steps`` steps, about 30 s on 2 idle cores). A discrete head is there at 600 (its val MAE is flat from 600 to
    800: 0.152, 0.151); the regression head's every-window MAE is not under 0.6x the train mean's before 800."""
    from schemas.train import TrainConfig
    from vla_model.trainer import train

    config = TrainConfig.model_validate({
        "data": {"store": str(learn_store), "window": {"window": 2, "chunk": 4}, "augment": "mirror",
                 "batching": batching},
        "model": SMALL_MODEL | {"head": head},
        "optim": {"lr": 2e-3, "batch_size": batch_size, "max_steps": steps, "warmup_steps": 10},
        "log": {"log_every": 50, "val_every": steps, "save_every": steps},
    })
    train(config, out / "run")
    return out / "run"


@pytest.fixture(scope="session")
def trained_run(learn_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-window batches of 16 samples (32 frames per step); shared by the learning test and the eval tests."""
    return learned(learn_store, tmp_path_factory.mktemp("trained"), {"mode": "windows"}, 16)


def first_five_and_all(clean_dir: Path, root: Path) -> tuple[Path, Path]:
    """Two source folders under ``root``: the first 5 of ``clean_dir``'s episodes, and all of them (copies, with
    the instruction CSV): a first build, then one that adds the rest."""
    first, everything = root / "first", root / "all"
    first.mkdir(), everything.mkdir()
    for i, p in enumerate(sorted(clean_dir.glob("*.h5"))):
        shutil.copy(p, everything)
        if i < 5:
            shutil.copy(p, first)
    for folder in (first, everything):
        shutil.copy(clean_dir / "dataset_index.csv", folder)
    return first, everything


def committed(store) -> list[str]:
    """The versions on an opened store's history (``history.json`` of the version it opened), oldest first."""
    return [r["version"] for r in json.loads(store.objects.read("history.json"))["versions"]]


def version_dir(store: Path) -> Path:
    """The folder of a store's current version, found as another tool would: ``current.json`` names it."""
    import json

    return store / "versions" / json.loads((store / "current.json").read_text())["version"]


def segment_dir(store: Path) -> Path:
    """The frames of a store made by one build, found as another tool would: the one segment its current
    version's manifest names, a plain zarr group (data/<camera>, data/action, meta/episode_ends)."""
    import json

    (segment,) = json.loads((version_dir(store) / "manifest.json").read_text())["segments"]
    return store / "segments" / segment


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """A real S3 API (moto's server mode) on 127.0.0.1, and the environment every client finds it by: the
    standard AWS variables (this process, build workers and CLIs started by tests inherit them), no flag."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = S3_ENV | {"AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture
def bucket(s3_server: dict[str, str]) -> str:
    """A new, empty bucket on the test S3 server."""
    import uuid

    import s3fs

    name = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    return name
