"""A store's history through the CLI: every build is a version that stays readable (STORE@VERSION, STORE@TAG),
`log` lists them with what changed, tags never move, and gc drops old data only by the retention rule asked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import committed, first_five_and_all
from conftest import run_cli as run
from vla_data.store.reader import StoreError, open_store


@pytest.fixture(scope="module")
def two_builds(clean_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store built from 5 episodes, then extended by the other 3 (two versions); a spare copy of the sources."""
    root = tmp_path_factory.mktemp("history")
    first, everything = first_five_and_all(clean_dir, root)
    out = root / "ds.zarr"
    assert run("build-splits", str(first), "-o", str(out), "--image-size", "16")[0] == 0
    assert run("build-splits", str(everything), "-o", str(out), "--image-size", "16")[0] == 0
    return out, everything


def test_log_lists_every_build_newest_first_with_what_it_changed(two_builds: tuple[Path, Path]) -> None:
    out, _ = two_builds
    code, text = run("log", str(out))
    store = open_store(out)
    v1, v2 = committed(store)
    assert code == 0 and store.version == v2
    assert text.index(v2) < text.index(v1) and f"{v2}  (current)" in text
    assert "5 added; 5 episodes" in text and "3 added; 8 episodes" in text and "build-splits" in text
    code, raw = run("log", str(out), "--json")
    history = json.loads(raw)
    assert code == 0 and history["current"] == v2
    assert [(r["version"], r["parent"], r["change"]["episodes"]) for r in history["versions"]] == [
        (v1, None, 5), (v2, v1, 8)]


def test_an_older_version_reads_as_it_was_by_id_and_by_tag(two_builds: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = two_builds
    v1, v2 = committed(open_store(out))
    old = open_store(f"{out}@{v1}")
    assert old.version == v1 and len(old.episodes) == 5 and old.manifest.n_episodes == 5
    now = open_store(out)
    assert np.array_equal(now.camera("rgb")[: old.manifest.n_frames], old.camera("rgb")[:])  # stored frames kept
    code, text = run("info", f"{out}@{v1}")
    assert code == 0 and f"version {v1} (not the current one)" in text and "episodes 5," in text
    # a tag names it; tags never move, and deleting one is explicit
    assert run("tag", str(out), "first-five", v1) == (0, f"tagged {v1} as first-five: open it as {out}@first-five\n")
    assert open_store(f"{out}@first-five").episodes.equals(old.episodes)
    code, text = run("tag", str(out), "first-five")
    assert code == 1 and f"tag first-five exists already (on {v1})" in text and "--delete" in text
    code, text = run("tag", str(out), "9-lives")
    assert code == 1 and "is not a tag name" in text
    code, text = run("tag", str(out), "v000009-0000000a", v1)  # it would shadow that version's id
    assert code == 1 and "not shaped like a version id" in text
    code, text = run("log", str(out))
    assert f"{v1}  (first-five)" in text
    assert run("tag", str(out), "first-five", "--delete")[0] == 0
    with pytest.raises(StoreError, match="no version or tag 'first-five'"):
        open_store(f"{out}@first-five")


def test_unknown_versions_and_tags_are_one_error_with_the_closest(two_builds: tuple[Path, Path]) -> None:
    out, _ = two_builds
    v1, v2 = committed(open_store(out))
    typo = v2[:-1] + ("0" if v2[-1] != "0" else "1")
    code, text = run("info", f"{out}@{typo}")
    assert code == 1 and "no such version" in text and f"did you mean {v2}?" in text and "Traceback" not in text
    code, text = run("log", str(out.parent / "nothere.zarr"))
    assert code == 1 and "does not exist" in text
    code, text = run("log", str(out.parent / "first"))  # a folder of recordings is no store
    assert code == 1 and "is not a vla-data store" in text
    code, text = run("info", f"{out}@lastweek")
    assert code == 1 and "no version or tag 'lastweek'" in text and "vla-data log" in text
    code, text = run("tag", str(out), "x", typo)
    assert code == 1 and "no such version" in text


def test_an_at_sign_in_a_folder_name_is_refused_unless_escaped(two_builds: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = two_builds
    plain = tmp_path / "ds"
    shutil.copytree(out, plain)
    tagged = tmp_path / "ds@keep"
    shutil.copytree(out, tagged)
    code, text = run("info", str(tagged))
    assert code == 1 and "is both a folder and" in text and f"({tagged}@)" in text
    code, text = run("info", f"{tagged}@")
    assert code == 0 and f"store {tagged}" in text


def test_gc_drops_old_data_only_by_the_rule_asked_and_keeps_tags_and_the_log(two_builds: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "ds.zarr"
    shutil.copytree(two_builds[0], out)
    v1, v2 = committed(open_store(out))
    code, text = run("gc", str(out))  # no rule: only killed builds' leftovers, and there are none
    assert code == 0 and "nothing to remove" in text and open_store(f"{out}@{v1}").version == v1
    assert run("tag", str(out), "keep", v1)[0] == 0
    code, text = run("gc", str(out), "--keep-last", "0")
    assert code == 0 and "nothing to remove" in text  # the tag keeps it
    assert run("tag", str(out), "keep", "--delete")[0] == 0
    code, text = run("gc", str(out), "--keep-last", "0", "--dry-run")
    assert code == 0 and f"would remove versions/{v1} (committed, beyond the retention rule)" in text
    assert (out / "versions" / v1).is_dir()
    code, text = run("gc", str(out), "--keep-last", "0")
    assert code == 0 and f"removed versions/{v1}" in text and not (out / "versions" / v1).exists()
    assert open_store(out).version == v2  # the current version is never removed
    code, text = run("log", str(out))
    assert f"{v1}  (data removed by gc)" in text  # its record stays
    code, text = run("info", f"{out}@{v1}")
    assert code == 1 and "its data was removed by gc" in text
    code, text = run("gc", str(out), "--keep-days", "3")
    assert code == 2 and "--keep-days needs --keep-last" in text


def test_a_store_being_built_is_named_as_such_not_incomplete(tmp_path: Path) -> None:
    """A first build in progress (its marker written, its lock held by a live process) is 'being built by' that
    process; one whose holder is gone is an incomplete store, as before."""
    import os
    import socket
    from datetime import UTC, datetime

    from schemas.store import StoreMarker, StoreWriter

    out = tmp_path / "ds.zarr"
    out.mkdir()
    (out / "vla-data-store.json").write_text(StoreMarker(tool_version="0", created="2026-01-01").model_dump_json())
    lock = tmp_path / ".ds.zarr.lock"
    live = StoreWriter(pid=os.getpid(), host=socket.gethostname(), command="vla-data build-splits raw -o ds.zarr",
                       started=datetime.now(UTC).isoformat(timespec="seconds"))
    lock.write_text(live.model_dump_json())
    code, text = run("info", str(out))
    assert code == 1 and "being built by `vla-data build-splits raw -o ds.zarr`" in text and "--overwrite" not in text
    lock.write_text(live.model_copy(update={"pid": 2**22 + 12345}).model_dump_json())  # no such process
    code, text = run("info", str(out))
    assert code == 1 and "incomplete store" in text


def test_overwrite_keeps_history_and_refuses_to_lose_episodes_unless_pruned(clean_dir: Path, tmp_path: Path) -> None:
    first, everything = first_five_and_all(clean_dir, tmp_path)
    out = tmp_path / "ds.zarr"
    assert run("build-splits", str(everything), "-o", str(out), "--image-size", "16")[0] == 0
    (v1,) = committed(open_store(out))
    code, text = run("build-splits", str(first), "-o", str(out), "--image-size", "16", "--overwrite")
    assert code == 1 and "3 stored episode(s) are not in the sources and will not be in the new version" in text
    assert "--prune" in text and committed(open_store(out)) == [v1]  # nothing written
    code, text = run("build-splits", str(first), "-o", str(out), "--image-size", "16", "--overwrite", "--prune")
    assert code == 0, text
    v1_, v2 = committed(open_store(out))
    assert v1_ == v1 and len(open_store(out).episodes) == 5 and len(open_store(f"{out}@{v1}").episodes) == 8
    assert "3 removed; 5 episodes" in run("log", str(out))[1]
    # an incremental build keeps a stored episode whose source is gone, and says so
    gone = sorted(first.glob("*.h5"))[0]
    gone.unlink()
    code, text = run("build-splits", str(first), "-o", str(out), "--image-size", "16")
    assert code == 0 and f"1 stored episode(s) kept whose source is gone: {gone}" in text, text
    assert len(open_store(out).episodes) == 5


def test_a_changed_instruction_is_listed_and_taken_only_when_asked(clean_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "raw"
    shutil.copytree(clean_dir, src)
    out = tmp_path / "ds.zarr"
    assert run("build-splits", str(src), "-o", str(out), "--image-size", "16")[0] == 0
    csv = src / "dataset_index.csv"
    (name, old), = [line.split(",", 1) for line in csv.read_text().splitlines()[1:]]
    csv.write_text(f"episode_path,instruction\n{name},Reach the bottle on the left quickly\n")
    code, text = run("build-splits", str(src), "-o", str(out), "--image-size", "16")
    assert code == 0 and f"instruction differs from the stored one (kept; --update-instructions takes it): " \
                         f"{src / name}: {old!r} -> 'Reach the bottle on the left quickly'" in text, text
    assert old in set(open_store(out).episodes["instruction"])
    code, text = run("build-splits", str(src), "-o", str(out), "--image-size", "16", "--update-instructions")
    assert code == 0 and f"relabelled: {src / name}" in text, text
    table = open_store(out).episodes.set_index("source_path")
    assert table.loc[str(src / name), "instruction"] == "Reach the bottle on the left quickly"
    assert "1 relabelled; 8 episodes" in run("log", str(out))[1]
    first = committed(open_store(out))[0]
    assert old in set(open_store(f"{out}@{first}").episodes["instruction"])  # the older version keeps its label


def test_a_gc_killed_half_way_leaves_a_version_that_reads_as_removed(two_builds: tuple[Path, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """gc removes a version's manifest before its other objects: stopped in between, the version says it was
    removed (never opens with shards missing), and the next gc finishes the job."""
    from schemas.history import Retention
    from vla_data.store.location import StoreLocation
    from vla_data.store.writer import collect_garbage

    out = tmp_path / "ds.zarr"
    shutil.copytree(two_builds[0], out)
    v1, _ = committed(open_store(out))

    def killed(self, prefix: str) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(StoreLocation, "delete_prefix", killed)
    with pytest.raises(KeyboardInterrupt):
        collect_garbage(StoreLocation.of(out), wait=True, retention=Retention(keep_last=0))
    monkeypatch.undo()
    assert (out / "versions" / v1 / "episodes.csv").is_file()  # stopped half-way
    with pytest.raises(StoreError, match="its data was removed by gc"):
        open_store(f"{out}@{v1}")
    code, text = run("gc", str(out), "--keep-last", "0")
    assert code == 0 and f"removed versions/{v1}" in text and not (out / "versions" / v1).exists()


def test_a_version_from_before_histories_reads_and_is_kept(clean_dir: Path, tmp_path: Path) -> None:
    """A store whose current version has no history.json (built before histories) logs it from its own tables
    and build log, and the next build keeps it in the history, readable by its id."""
    first, everything = first_five_and_all(clean_dir, tmp_path)
    out = tmp_path / "ds.zarr"
    assert run("build-splits", str(first), "-o", str(out), "--image-size", "16")[0] == 0
    (v1,) = committed(open_store(out))
    (out / "versions" / v1 / "history.json").unlink()
    manifest = json.loads((out / "versions" / v1 / "manifest.json").read_text())
    del manifest["checksums"]["history.json"]  # as such a version's manifest was written
    (out / "versions" / v1 / "manifest.json").write_text(json.dumps(manifest))
    code, text = run("log", str(out))
    assert code == 0 and "(before history)" in text and "5 added; 5 episodes" in text
    assert run("build-splits", str(everything), "-o", str(out), "--image-size", "16")[0] == 0
    assert committed(open_store(out))[0] == v1 and len(open_store(f"{out}@{v1}").episodes) == 5
    assert run("info", f"{out}@{v1}", "--verify")[0] == 0


def test_an_unchanged_stored_source_is_recognised_without_reading_it(clean_dir: Path, tmp_path: Path) -> None:
    """A build recognises a stored source file by its stamp (size, mtime, quick hash) and reads only the others;
    a file whose stamp changed is read and hashed again (a copy with the same content is still no change)."""
    src = Path(shutil.copytree(clean_dir, tmp_path / "raw"))
    out = tmp_path / "ds.zarr"
    assert run("build-splits", str(src), "-o", str(out), "--image-size", "16")[0] == 0
    assert all(r.stamp() is not None for r in open_store(out).records())
    code, text = run("build-splits", str(src), "-o", str(out), "--image-size", "16")
    assert code == 0 and "8 stored source file(s) recognised unchanged" in text and "nothing new" in text, text
    touched = sorted(src.glob("*.h5"))[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same bytes, new mtime
    code, text = run("build-splits", str(src), "-o", str(out), "--image-size", "16")
    assert code == 0 and "7 stored source file(s) recognised unchanged" in text and "nothing new" in text, text


def test_a_stored_file_is_validated_again_once_its_stamp_changes(clean_dir: Path, tmp_path: Path) -> None:
    """Only an unchanged stamp spares a stored file the validation: a stored file damaged since (truncated)
    stops the next build, named, with nothing written."""
    src = Path(shutil.copytree(clean_dir, tmp_path / "raw"))
    out = tmp_path / "ds.zarr"
    assert run("build-splits", str(src), "-o", str(out), "--image-size", "16")[0] == 0
    damaged = sorted(src.glob("*.h5"))[2]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    code, text = run("build-splits", str(src), "-o", str(out), "--image-size", "16")
    assert code == 1 and "build refused, nothing written" in text and damaged.name in text, text
    assert len(committed(open_store(out))) == 1


def test_a_source_recognised_before_the_lock_is_never_read_unvalidated(clean_dir: Path) -> None:
    """A report made from the stored record (not validated) whose file the store no longer knows under the lock
    (another build or edit ran between) stops the build instead of reading an unvalidated file."""
    from schemas import FileReport, RecorderSettings
    from schemas.store import BuildOptions
    from vla_data.build.sources import read_sources
    from vla_data.sources.content_hash import file_stamp
    from vla_data.store.errors import StoreError

    path = str(sorted(clean_dir.glob("*.h5"))[0])
    with pytest.raises(StoreError, match="run this build again"):
        read_sources([FileReport(path=path)], BuildOptions(), RecorderSettings(), {}, {path: file_stamp(path)})
