"""build-splits on a Dask cluster (a real ``LocalCluster`` of worker processes on 127.0.0.1, started here): the
store it publishes is byte-identical to a single-process build, also when a worker is killed mid-build (its
shards run again elsewhere); an address where no scheduler answers is one clear error."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from conftest import SMALL, segment_dir
from conftest import run_cli as run
from schemas import RecorderSettings
from schemas.store import BuildOptions, Preprocessing
from schemas.synthetic import SyntheticConfig
from vla_data.build.job import build_store
from vla_data.common import pools
from vla_data.store.reader import FRAMES_PER_SHARD, open_store, verify
from vla_data.synthetic.episodes import make_synthetic



@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    """Two single-threaded worker processes, each under a nanny that restarts it when it dies."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as local, Client(local) as client:
        yield client


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dask-sources")
    make_synthetic(out, SyntheticConfig(episodes=24, seed=5, **SMALL))  # 8 shards of 64 frames
    return out


@pytest.fixture(scope="module")
def one_process(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one") / "ds.zarr"
    assert run("build-splits", str(sources), "-o", str(out), "--image-size", "16", "--workers", "1")[0] == 0
    return out


def segment_bytes(store: Path) -> dict[str, bytes]:
    """Every file of the segment the store's one build wrote but its record (which holds the build's time)."""
    root = segment_dir(store)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "segment.json"}


def assert_same_store(built: Path, reference: Path) -> None:
    got, want = segment_bytes(built), segment_bytes(reference)
    assert sum(k.startswith("data/rgb/") for k in want) > 5 and got.keys() == want.keys()
    assert [k for k in want if got[k] != want[k]] == []  # byte for byte, shard for shard
    a, b = open_store(built), open_store(reference)
    assert a.manifest.stats == b.manifest.stats
    assert a.episodes.drop(columns="segment").equals(b.episodes.drop(columns="segment"))  # segment: the build's id
    (sa,), (sb,) = a.manifest.segments, b.manifest.segments
    assert a.segment(sa).checksums == b.segment(sb).checksums
    assert not verify(a)


def test_a_build_on_a_dask_cluster_is_byte_identical_to_one_process(cluster: Client, sources: Path,
                                                                     one_process: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds.zarr"
    address = cluster.scheduler.address
    code, text = run("build-splits", str(sources), "-o", str(out), "--image-size", "16", "--scheduler", address)
    assert code == 0, text
    assert_same_store(out, one_process)


class KillAWorker:
    """A build's progress listener that, when the first shard is done, SIGKILLs a worker that is running one."""

    def __init__(self, client: Client) -> None:
        self.client, self.killed, self.shards = client, None, 0

    def start(self, frames: int, episodes: int) -> None:
        assert frames > 5 * FRAMES_PER_SHARD

    def advance(self, frames: int, episodes: int) -> None:
        self.shards += 1
        if self.killed is None:
            busy = [address for address, keys in self.client.processing().items() if keys]
            pids = self.client.run(os.getpid, workers=busy[:1])
            self.killed = next(iter(pids.values()))
            os.kill(self.killed, signal.SIGKILL)


def test_a_dask_worker_killed_mid_build_still_gives_the_same_store(cluster: Client, sources: Path,
                                                                    one_process: Path, tmp_path: Path) -> None:
    before = set(cluster.run(os.getpid).values())
    out = tmp_path / "ds.zarr"
    killer = KillAWorker(cluster)
    options = BuildOptions(preprocessing=Preprocessing(image_size=16), scheduler=cluster.scheduler.address)
    build_store([sources], out, options, RecorderSettings(), progress=killer)
    shards = -(-open_store(out).manifest.n_frames // FRAMES_PER_SHARD)
    assert killer.killed in before and killer.shards == shards  # each shard reported once, the killed one's retried
    cluster.wait_for_workers(2, timeout=60)
    assert killer.killed not in set(cluster.run(os.getpid).values())  # the nanny started a new process
    assert_same_store(out, one_process)


def test_a_scheduler_that_does_not_answer_is_one_clear_error(sources: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pools, "SCHEDULER_TIMEOUT", "1s")  # a user waits 10 s; the answer is the same
    out = tmp_path / "ds.zarr"
    code, text = run("build-splits", str(sources), "-o", str(out), "--image-size", "16",
                     "--scheduler", "tcp://127.0.0.1:9")
    assert code == 1 and "tcp://127.0.0.1:9" in text and "no Dask scheduler answers" in text, text
    assert "Traceback" not in text and not out.exists()
