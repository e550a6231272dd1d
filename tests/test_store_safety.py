"""build-splits never loses data: it deletes only what it made, one build writes a store at a time, a changed
or duplicated source is never stored silently, a dropped channel is never thrown away silently, and every
failure (Ctrl-C, a full disk, a damaged shard) ends in a message, not a traceback."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import Start, committed, segment_dir, version_dir
from conftest import run_cli as run
from pipelines.cli import main
from schemas import ColorOrder
from schemas.store import DroppedChannel
from schemas.synthetic import SyntheticConfig
from vla_data.common.resize import resize_frames
from vla_data.store.reader import open_store
from vla_data.synthetic.episodes import make_synthetic
from vla_data.store.writer_lock import writer_lock

CLI = [sys.executable, "-m", "pipelines.cli"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and the sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def raw(clean_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the eight clean recordings, in ``tmp_path / "raw"``."""
    return Path(shutil.copytree(clean_dir, tmp_path / "raw"))


def build(*args: str) -> tuple[int, str]:
    return run("build-splits", *args, "--image-size", "16")


# -- 1. --overwrite deletes only what vla-data made ---------------------------------------------------------------
def test_output_on_or_inside_the_sources_is_refused_and_nothing_is_touched(raw: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    code, out = build(str(raw), "-o", str(raw), "--overwrite")
    assert code == 1 and f"-o {raw} is the source folder" in out and "Traceback" not in out
    code, out = build(str(raw), "-o", str(raw / "ds.zarr"), "--overwrite")
    assert code == 1 and "lies inside the source folder" in out
    code, out = build(str(raw), "-o", str(tmp_path), "--overwrite")  # proj/data holding proj/data/raw
    assert code == 1 and f"holds the source {raw}" in out
    assert snapshot(tmp_path) == before  # not one file added, changed or removed, no lock file either


def test_a_folder_that_is_not_a_store_is_never_replaced(raw: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("calibration notes")
    result = CliRunner().invoke(main, ["build-splits", str(raw), "-o", str(other), "--overwrite"])
    assert result.exit_code == 1 and "is not a vla-data store (it holds notes.txt)" in result.stderr
    assert "not a vla-data store" not in result.stdout  # refusals go to stderr
    assert (other / "notes.txt").read_text() == "calibration notes" and len(list(other.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build(str(raw), "-o", str(empty))[0] == 0  # a new, empty folder is fine
    assert open_store(empty).manifest.n_episodes == 8
    assert open_store(empty).manifest.source_frame_sizes == ["24x40"]


def test_readers_call_a_foreign_folder_not_a_store_and_never_suggest_overwrite(raw: Path, tmp_path: Path,
                                                                              learn_store: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("x")
    for args in (["info", str(notes)], ["inspect-sample", str(notes)],
                 ["train", str(notes), "-o", str(tmp_path / "run"), "--max-steps", "1"]):
        code, out = run(*args)
        assert code == 1 and "not a vla-data store (it holds a.txt)" in out and "--overwrite" not in out, args
    assert [p.name for p in notes.iterdir()] == ["a.txt"]
    interrupted = tmp_path / "interrupted.zarr"
    shutil.copytree(learn_store, interrupted)
    (interrupted / "current.json").unlink()  # vla-data's own, no version committed: rebuilding it over is safe
    code, out = run("info", str(interrupted))
    assert code == 1 and "incomplete store" in out and "--overwrite" in out
    assert build(str(raw), "-o", str(interrupted), "--overwrite")[0] == 0


def test_dot_as_output_is_refused_with_a_message(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = build("raw", "-o", ".")
    assert code == 1 and f"-o {tmp_path} holds the source {raw}" in out and "Traceback" not in out


# -- 2. one writer per store --------------------------------------------------------------------------------------
def test_a_second_build_waits_for_the_first_or_refuses_with_no_wait(raw: Path, tmp_path: Path, start: Start) -> None:
    out = tmp_path / "ds.zarr"
    with writer_lock(out, wait=False):  # the real lock, held here as a live build holds it
        busy = subprocess.run([*CLI, "build-splits", str(raw), "-o", str(out), "--no-wait"], capture_output=True,
                              text=True, timeout=120)
        assert busy.returncode == 1 and f"pid {os.getpid()}" in busy.stderr and "Traceback" not in busy.stderr
        waiting = start([*CLI, "build-splits", str(raw), "-o", str(out), "--image-size", "16"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = waiting.stderr.readline()
        assert line.startswith("waiting for") and f"pid {os.getpid()}" in line
        assert not out.exists() and waiting.poll() is None  # it waits, and has written nothing
    stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, stderr
    assert open_store(out).manifest.n_episodes == 8


def test_two_builds_at_once_both_land_all_their_episodes(raw: Path, tmp_path: Path, start: Start) -> None:
    halves = [tmp_path / "first", tmp_path / "second"]
    for i, half in enumerate(halves):
        half.mkdir()
        for p in sorted(raw.glob("*.h5"))[i::2]:
            shutil.copy(p, half)
        shutil.copy(raw / "dataset_index.csv", half)
    out = tmp_path / "ds.zarr"
    builds = [start([*CLI, "build-splits", str(h), "-o", str(out), "--image-size", "16"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for h in halves]
    results = [(b.wait(timeout=300), b.stderr.read()) for b in builds]
    assert all(code == 0 for code, _ in results), results
    store = open_store(out)
    assert sorted(Path(p).name for p in store.episodes["source_path"]) == sorted(p.name for p in raw.glob("*.h5"))
    runs = store.build_log().runs
    assert sorted(len(r.added) for r in runs) == [4, 4] and [r.kept for r in runs] == [0, 4]


# -- 3. a re-exported episode is never stored twice ---------------------------------------------------------------
def _reexport(path: Path) -> np.ndarray:
    """Change one episode in place as a re-export would (one more forward command); its new actions."""
    with h5py.File(path, "r+") as f:
        actions = f["actions"][()]
        actions[-1, 0] = 1.15 if actions[-1, 0] != 1.15 else -1.15
        f["actions"][...] = actions
    return actions


def test_a_changed_source_is_refused_by_name_or_replaced_in_its_split(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds.zarr"
    assert build(str(raw), "-o", str(out))[0] == 0
    before = open_store(out)
    changed = sorted(raw.glob("*.h5"))[2]
    row = before.episodes[before.episodes["source_path"] == str(changed)].iloc[0]
    new_actions = _reexport(changed)
    code, text = build(str(raw), "-o", str(out))
    assert code == 1 and f"{changed} (stored {row['content_hash'][:12]}, now " in text and "--replace-changed" in text
    assert open_store(out).manifest == before.manifest  # nothing changed
    code, text = build(str(raw), "-o", str(out), "--replace-changed")
    assert code == 0, text
    assert f"replaced in {row['split']}" in text and str(changed) in text
    after = open_store(out)
    assert len(after.episodes) == 8  # replaced, not added beside the stale one
    new_row = after.episodes[after.episodes["source_path"] == str(changed)].iloc[0]
    assert new_row["content_hash"] != row["content_hash"] and new_row["split"] == row["split"]
    a, b = after.episode_range(int(new_row["episode"]))
    assert np.array_equal(after.action[a:b], new_actions[:, after.manifest.actions.channels])
    with h5py.File(changed, "r") as f:
        assert np.array_equal(after.camera("rgb")[a:b], resize_frames(f["images"][()], after.manifest.preprocessing, ColorOrder.bgr))
    (entry,) = after.build_log().runs[-1:]
    assert [(r.source_path, r.old_hash, r.split.value) for r in entry.replaced] == [
        (str(changed), row["content_hash"], row["split"])]


def test_content_duplicates_under_other_paths_are_listed(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds.zarr"
    assert build(str(raw), "-o", str(out))[0] == 0
    original = sorted(raw.glob("*.h5"))[0]
    copy = raw / f"copy_of_{original.name}"
    shutil.copy(original, copy)
    code, text = build(str(raw), "-o", str(out))
    assert code == 0 and f"left out (same content as {original}): {copy}" in text
    assert "nothing new" in text and len(committed(open_store(out))) == 1  # the copy adds nothing: no version
    assert len(open_store(out).episodes) == 8


# -- 4. an incremental build never drops a channel now in use -----------------------------------------------------
def test_an_episode_using_a_dropped_channel_is_refused(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds.zarr"
    assert build(str(raw), "-o", str(out))[0] == 0
    assert open_store(out).manifest.actions.dropped == [DroppedChannel(channel=2, name="angular_z", value=0.0)]
    rotating = tmp_path / "rotating"
    make_synthetic(rotating, SyntheticConfig(episodes=1, seed=99, height=24, width=40))
    (episode,) = rotating.glob("*.h5")
    with h5py.File(episode, "r+") as f:  # the operator pressed r (rotate) once
        actions = f["actions"][()]
        actions[3, 2] = 1.15
        f["actions"][...] = actions
    code, text = build(str(raw), str(rotating), "-o", str(out))
    assert code == 1 and "use action channel 2 (angular_z)" in text and episode.name in text
    assert "--overwrite --action-channels 0,1,2" in text
    assert open_store(out).manifest.n_episodes == 8
    assert build(str(raw), str(rotating), "-o", str(out), "--action-channels", "0,1")[0] == 0  # dropped knowingly
    assert build(str(raw), str(rotating), "-o", str(out), "--overwrite", "--action-channels", "0,1,2")[0] == 0
    assert open_store(out).manifest.actions.names == ["linear_x", "linear_y", "angular_z"]


# -- 11. messages instead of tracebacks ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Larger frames, so a build with workers takes long enough to be interrupted while writing."""
    out = tmp_path_factory.mktemp("slow") / "raw"
    make_synthetic(out, SyntheticConfig(episodes=12, seed=4, height=240, width=426))
    return out


def test_ctrl_c_with_workers_publishes_nothing_and_says_so(slow_raw: Path, raw: Path, tmp_path: Path,
                                                           start: Start) -> None:
    out = tmp_path / "ds.zarr"
    assert build(str(raw), "-o", str(out))[0] == 0
    before = open_store(out).manifest
    proc = start([*CLI, "build-splits", str(slow_raw), "-o", str(out), "--image-size", "96", "--workers", "2",
                  "--overwrite", "--prune"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    first = version_dir(out)
    while not [p for p in out.glob("segments/*/data/rgb/c/*/*/*/*") if p.parts[-8] != first.name]:  # new shards
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the build and its workers
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted, nothing published" in stderr and "Traceback" not in stderr + stdout
    assert open_store(out).manifest == before and list(out.glob("versions/*")) == [first]  # the new one removed
    assert [p.name for p in out.glob("segments/*")] == [first.name], sorted(str(p) for p in out.rglob("*"))  # and its frames


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_write_that_fails_mid_build_is_one_message_and_publishes_nothing(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds.zarr"
    assert build(str(raw), "-o", str(out))[0] == 0
    before = open_store(out).manifest
    proc = subprocess.run([*CLI, "build-splits", str(raw), "-o", str(out), "--image-size", "24", "--overwrite"],
                          capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=120)
    assert proc.returncode == 1 and "File too large" in proc.stderr and "nothing was published" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert open_store(out).manifest == before and list(out.glob("versions/*")) == [version_dir(out)]
    code, text = build(str(raw), "-o", str(raw.parent / "ds.zarr" / "current.json" / "x.zarr"))
    assert code == 1 and "current.json is a file, not a folder" in text and "Traceback" not in text
    code, text = build(str(raw), "-o", str(raw.parent / "ds.zarr" / "inner.zarr"))
    assert code == 1 and f"lies inside the store {out}" in text and not (out / "inner.zarr").exists()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
@pytest.mark.parametrize(("mount_options", "message"), [("size=40k", "No space left on device"),
                                                        ("ro", "Read-only file system")])
def test_a_full_or_read_only_disk_is_one_message(raw: Path, tmp_path: Path, mount_options: str, message: str) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o {mount_options} tmpfs {disk} || exit 77; "
              f"exec {' '.join(CLI)} build-splits {raw} -o {disk}/ds.zarr --image-size 64")
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        pytest.skip(f"this machine cannot mount a small file system: {proc.stderr.strip()}")
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_a_damaged_shard_names_the_array_and_episode(learn_store: Path, tmp_path: Path) -> None:
    damaged = Path(shutil.copytree(learn_store, tmp_path / "damaged.zarr"))
    for shard in (p for p in (segment_dir(damaged) / "data" / "rgb" / "c").rglob("*") if p.is_file()):
        raw = bytearray(shard.read_bytes())
        for i in range(64, len(raw) - 64, 97):
            raw[i] ^= 0xFF
        shard.write_bytes(bytes(raw))
    code, text = run("inspect-sample", str(damaged), "--split", "train", "--index", "0")
    assert code == 1 and "Traceback" not in text
    assert "data/rgb/c/" in text and "checksum mismatch" in text and "episode(s)" in text
    assert f"vla-data info {damaged} --verify" in text
    code, text = run("train", str(damaged), "-o", str(tmp_path / "run"), "--max-steps", "1", "--window", "2",
                     "--chunk", "2", "--hidden", "16")
    assert code == 1 and "checksum mismatch" in text and "--verify" in text
