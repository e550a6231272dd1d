"""Stores on object storage, against a real S3 API (moto's server mode on 127.0.0.1, see conftest's ``s3_server``):
a build to s3:// reads back with plain zarr and s3fs and equals a local build; incremental adds; a build killed
at any moment leaves the previous complete version or the new one, never a mix; leftovers are listed and
removed; wrong credentials, a missing bucket or no network are one message naming the URL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import s3fs
import zarr

from conftest import S3_ENV, Start, committed, segment_dir, version_dir
from conftest import run_cli as run
from schemas.synthetic import SyntheticConfig
from vla_data.store.reader import open_store, verify
from vla_data.synthetic.episodes import make_synthetic

CLI = [sys.executable, "-m", "pipelines.cli"]


def objects(fs: s3fs.S3FileSystem, prefix: str) -> dict[str, str]:
    """Every object under ``prefix`` and its ETag (the MD5 of its bytes on S3)."""
    fs.invalidate_cache()
    return {p[len(prefix) + 1:]: info["ETag"] for p, info in fs.find(prefix, detail=True).items()}


def test_a_build_to_s3_reads_back_with_plain_zarr_and_equals_a_local_build(clean_dir: Path, bucket: str,
                                                                          tmp_path: Path) -> None:
    url = f"s3://{bucket}/fleet/ds.zarr"
    code, text = run("build-splits", str(clean_dir), "-o", url, "--image-size", "16", "--workers", "2")
    assert code == 0 and f"wrote {url}" in text, text
    local = tmp_path / "ds.zarr"
    assert run("build-splits", str(clean_dir), "-o", str(local), "--image-size", "16")[0] == 0

    fs = s3fs.S3FileSystem()  # plain s3fs and zarr, no vla-data: the pointer names the version, its manifest the frames
    pointer = json.loads(fs.cat(f"{bucket}/fleet/ds.zarr/current.json"))
    version = f"{bucket}/fleet/ds.zarr/versions/{pointer['version']}"
    (segment,) = json.loads(fs.cat(f"{version}/manifest.json"))["segments"]
    remote = zarr.open_group(f"s3://{bucket}/fleet/ds.zarr/segments/{segment}", mode="r")
    here = zarr.open_group(segment_dir(local), mode="r")
    for key in ("data/rgb", "data/action", "meta/episode_ends"):
        np.testing.assert_array_equal(remote[key][:], here[key][:])
    with fs.open(f"{version}/episodes.csv") as f:
        pd.testing.assert_frame_equal(pd.read_csv(f).drop(columns="segment"),
                                      pd.read_csv(version_dir(local) / "episodes.csv").drop(columns="segment"))

    on_s3, on_disk = open_store(url), open_store(local)
    assert on_s3.manifest.stats == on_disk.manifest.stats
    (local_segment,) = on_disk.manifest.segments
    shards = {k: v for k, v in on_disk.segment(local_segment).checksums.items() if k.startswith("data/")}
    assert len(shards) > 2 and shards.items() <= on_s3.segment(segment).checksums.items()  # the same bytes
    code, text = run("info", url, "--verify")
    assert code == 0 and "all checksums match" in text and "leftovers" not in text
    assert sorted(objects(fs, f"{bucket}/fleet/ds.zarr")) == sorted(  # nothing else: no lease left behind
        ["current.json", "vla-data-store.json"]
        + [f"versions/{pointer['version']}/{k}" for k in [*on_s3.manifest.checksums, "manifest.json"]]
        + [f"segments/{segment}/{k}" for k in [*on_s3.segment(segment).checksums, "segment.json"]])


def split_sources(clean_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The clean episodes in two folders: five, then the other three."""
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir(), later.mkdir()
    for i, p in enumerate(sorted(clean_dir.glob("*.h5"))):
        (first if i < 5 else later).joinpath(p.name).write_bytes(p.read_bytes())
    return first, later


def test_an_incremental_add_on_s3_keeps_stored_episodes_and_their_splits(clean_dir: Path, bucket: str,
                                                                        tmp_path: Path) -> None:
    first, later = split_sources(clean_dir, tmp_path)
    url = f"s3://{bucket}/ds.zarr"
    assert run("build-splits", str(first), "-o", url, "--image-size", "16")[0] == 0
    before = open_store(url)
    old = dict(zip(before.episodes["content_hash"], before.episodes["split"], strict=True))
    old_rgb = before.camera("rgb")[:]
    code, text = run("build-splits", str(first), str(later), "-o", url, "--image-size", "16")
    assert code == 0 and "3 added, 5 kept" in text, text
    after = open_store(url)
    assert {h: s for h, s in zip(after.episodes["content_hash"], after.episodes["split"], strict=True) if h in old} == old
    np.testing.assert_array_equal(after.camera("rgb")[: len(old_rgb)], old_rgb)
    assert verify(after) == [] and [r.kept for r in after.build_log().runs] == [0, 5]
    fs = s3fs.S3FileSystem()  # the superseded version stays, and reads as it did
    assert [p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/ds.zarr/versions")] == committed(after)
    again = open_store(f"{url}@{committed(after)[0]}")
    assert again.episodes.equals(before.episodes) and np.array_equal(again.camera("rgb")[:], old_rgb)


@pytest.fixture(scope="module")
def big_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Larger frames, so a build to S3 takes long enough to be killed at each moment."""
    out = tmp_path_factory.mktemp("big") / "raw"
    make_synthetic(out, SyntheticConfig(episodes=12, seed=4, height=240, width=426))
    return out


MOMENTS = {
    # what the test waits to see on S3 before it kills the build: the lease taken, shards of the new version
    # being written, the new version's manifest (just before or after the commit)
    "leased": lambda keys, first: "writer.json" in keys,
    "writing shards": lambda keys, first: any(k.startswith("segments/") and not k.startswith(f"segments/{first}/")
                                              and "/data/rgb/c/" in k for k in keys),
    "manifest written": lambda keys, first: any(k.startswith("versions/") and not k.startswith(f"versions/{first}/")
                                                and k.endswith("/manifest.json") for k in keys),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_build_to_s3_killed_at_any_moment_leaves_one_complete_version(moment: str, clean_dir: Path, big_raw: Path,
                                                                       bucket: str, tmp_path: Path,
                                                                       start: Start) -> None:
    url, prefix = f"s3://{bucket}/ds.zarr", f"{bucket}/ds.zarr"
    assert run("build-splits", str(clean_dir), "-o", url, "--image-size", "48")[0] == 0
    before = open_store(url)
    first = before.objects.url.rsplit("/", 1)[1]
    fs = s3fs.S3FileSystem()
    published = {k: v for k, v in objects(fs, prefix).items() if k.startswith((f"versions/{first}/", f"segments/{first}/"))}
    proc = start([*CLI, "build-splits", str(clean_dir), str(big_raw), "-o", url, "--image-size", "48", "--workers", "2"],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not MOMENTS[moment](objects(fs, prefix), first):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers, at once
    proc.wait()

    now = open_store(url)  # the previous version, or (killed after its commit) the new one: whole either way
    assert now.manifest in (before.manifest,) or now.manifest.n_episodes == 8 + 12
    assert verify(now) == []
    if now.manifest == before.manifest:  # nothing the published pointer names was written again
        assert {k: v for k, v in objects(fs, prefix).items()
                if k.startswith((f"versions/{first}/", f"segments/{first}/"))} == published
    code, text = run("info", url)
    assert code == 0
    if moment != "leased" and now.manifest == before.manifest:  # killed before its commit: its version is left
        assert "leftovers of killed builds" in text and "vla-data gc" in text
    if now.manifest != before.manifest:  # killed after its commit: the version it superseded is history, not left
        assert "leftovers" not in text and committed(now)[0] == first
    assert "being written by `vla-data build-splits" in text  # the dead build's lease, named

    # the next build, on this machine, proves the lease's holder gone, takes it over and removes the leftovers
    code, text = run("build-splits", str(clean_dir), str(big_raw), "-o", url, "--image-size", "48", "--no-wait")
    assert code == 0, text
    after = open_store(url)
    assert after.manifest.n_episodes == 20 and verify(after) == []
    keys = objects(fs, prefix)
    assert {k.split("/")[1] for k in keys if k.startswith("versions/")} == set(committed(after))  # no leftover
    assert {k.split("/")[1] for k in keys if k.startswith("segments/")} == set(after.manifest.segments)
    assert "writer.json" not in keys


def test_edits_merge_and_gc_on_s3_behave_as_on_a_local_folder(clean_dir: Path, bucket: str, tmp_path: Path) -> None:
    first, later = split_sources(clean_dir, tmp_path)
    url, prefix = f"s3://{bucket}/ed.zarr", f"{bucket}/ed.zarr"
    assert run("build-splits", str(first), str(later), "-o", url, "--image-size", "16")[0] == 0
    fs = s3fs.S3FileSystem()
    frames = {k: v for k, v in objects(fs, prefix).items() if k.startswith("segments/")}
    (v1,) = committed(open_store(url))
    assert run("remove", url, "0")[0] == 0 and run("relabel", url, "0", "--instruction", "Go home")[0] == 0
    assert {k: v for k, v in objects(fs, prefix).items() if k.startswith("segments/")} == frames  # 0 frame bytes
    assert len(open_store(url).episodes) == 7 and len(open_store(f"{url}@{v1}").episodes) == 8
    code, text = run("merge", url, str(tmp_path / "unused.zarr"), "-o", f"s3://{bucket}/m.zarr")
    assert code == 1 and "no such store" in text and not fs.exists(f"{bucket}/m.zarr")
    local = tmp_path / "local.zarr"
    assert run("build-splits", str(later), "-o", str(local), "--image-size", "16")[0] == 0
    code, text = run("merge", url, str(local), "-o", f"s3://{bucket}/m.zarr")
    assert code == 0 and "3 duplicate(s) left out" in text, text
    assert len(open_store(f"s3://{bucket}/m.zarr").episodes) == 7 and not verify(open_store(f"s3://{bucket}/m.zarr"))
    assert run("restore", url, v1)[0] == 0 and len(open_store(url).episodes) == 8
    code, text = run("gc", url, "--keep-last", "0")
    assert code == 0 and f"removed versions/{v1}" in text, text
    assert {k: v for k, v in objects(fs, prefix).items() if k.startswith("segments/")} == frames  # still used
    assert not verify(open_store(url))


def test_gc_removes_leftovers_only_and_a_live_lease_is_respected(clean_dir: Path, bucket: str) -> None:
    url, prefix = f"s3://{bucket}/ds.zarr", f"{bucket}/ds.zarr"
    assert run("build-splits", str(clean_dir), "-o", url, "--image-size", "16")[0] == 0
    fs = s3fs.S3FileSystem()
    fs.pipe_file(f"{prefix}/versions/v000007-0123abcd/data/rgb/zarr.json", b"{}")  # as a killed build leaves it
    code, text = run("info", url)
    assert "versions/v000007-0123abcd (unfinished build)" in text
    lease = {"pid": 1, "host": "robot-builder-2", "command": "vla-data build-splits raw -o " + url,
             "started": "2026-12-01T10:00:00+00:00"}
    fs.pipe_file(f"{prefix}/writer.json", json.dumps(lease).encode())  # a build on another machine
    code, text = run("gc", url, "--no-wait")
    assert code == 1 and "pid 1 on robot-builder-2" in text and "--break-lease" in text
    assert fs.exists(f"{prefix}/versions/v000007-0123abcd/data/rgb/zarr.json")
    code, text = run("build-splits", str(clean_dir), "-o", url, "--image-size", "16", "--no-wait")
    assert code == 1 and "robot-builder-2" in text
    code, text = run("gc", url, "--break-lease")
    assert code == 0 and "removed versions/v000007-0123abcd (unfinished build)" in text, text
    keys = objects(fs, prefix)
    assert "writer.json" not in keys and not any("v000007" in k for k in keys)
    assert verify(open_store(url)) == []
    code, text = run("gc", url)
    assert code == 0 and "nothing to remove" in text


def test_a_prefix_holding_other_objects_is_never_written(clean_dir: Path, bucket: str) -> None:
    fs = s3fs.S3FileSystem()
    fs.pipe_file(f"{bucket}/recordings/notes.txt", b"ours")
    code, text = run("build-splits", str(clean_dir), "-o", f"s3://{bucket}/recordings", "--image-size", "16",
                     "--overwrite")
    assert code == 1 and "not a vla-data store (it holds notes.txt)" in text
    assert objects(fs, f"{bucket}/recordings").keys() == {"notes.txt"}
    code, text = run("gc", f"s3://{bucket}/recordings")
    assert code == 1 and "not a vla-data store" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, with exactly this AWS environment (fsspec caches clients per process)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([*CLI, *args], env=clean | env, capture_output=True, text=True, timeout=120)


def test_wrong_credentials_a_missing_bucket_and_no_network_are_one_message(clean_dir: Path, s3_server: dict[str, str],
                                                                          tmp_path: Path, start: Start) -> None:
    port = free_port()  # a second S3 server that checks credentials: it knows none, so every key is wrong
    checking = start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                     env=os.environ | {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and checking.poll() is None
                time.sleep(0.2)
        # every command on one case (they share the opening of a store); a build (it creates) and info on another
        cases = [
            (S3_ENV | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}, "s3://robot-data/ds.zarr", "credentials",
             ("build-splits", "info", "train")),
            (s3_server, "s3://no-such-bucket-here/ds.zarr", "bucket", ("build-splits", "info")),
            (S3_ENV | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"},
             "s3://robot-data/ds.zarr", "network", ("info", "train")),
        ]
        for env, url, said, names in cases:
            commands = {"build-splits": ["build-splits", str(clean_dir), "-o", url, "--image-size", "16"],
                        "info": ["info", url], "train": ["train", url, "-o", str(tmp_path / "run"), "--max-steps", "1"]}
            for args in (commands[name] for name in names):
                proc = cli(env, *args)
                assert proc.returncode == 1, (args, proc.stderr)
                assert url in proc.stderr and said in proc.stderr, (args, proc.stderr)
                assert "Traceback" not in proc.stderr + proc.stdout and "testing" not in proc.stderr  # no secret shown
        assert not (tmp_path / "run").exists()
    finally:
        checking.terminate()
        checking.wait()
