"""Edits without a rebuild (issue 27): remove, relabel, resplit, restore and diff, through the CLI. Each is a new
version that writes no frame byte, recomputes the train stats exactly, and keeps the older versions readable;
every bad input is refused with nothing written."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import Start, committed
from conftest import run_cli as run
from schemas.store import Split
from vla_data.store.reader import open_store, verify
from vla_data.store.stats import ImageMoments, action_stats


@pytest.fixture(scope="module")
def built(clean_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edits") / "ds.zarr"
    assert run("build-splits", str(clean_dir), "-o", str(out), "--image-size", "16", "--val-ratio", "0.25")[0] == 0
    return out


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "ds.zarr"))


def frame_files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted((store / "segments").rglob("*")) if p.is_file()}


def expected_stats(address: str) -> tuple[list, list[float]]:
    """The train split's action stats and image mean, computed here from the version's own frames and actions."""
    opened = open_store(address)
    moments = ImageMoments()
    for i in opened.episodes.index[opened.episodes["split"] == Split.train.value]:
        a, b = opened.episode_range(int(i))
        moments.add(np.asarray(opened.camera("rgb")[a:b]))
    return action_stats(opened.split_actions("train")), moments.mean_std()[0]


def assert_exact_stats(address: str) -> None:
    actions, image_mean = expected_stats(address)
    stats = open_store(address).manifest.stats
    assert stats.action == actions and np.allclose(stats.image_mean, image_mean, rtol=0, atol=1e-12)


def test_edits_are_versions_that_write_no_frame_and_recompute_the_stats(store: Path) -> None:
    frames = frame_files(store)
    (v1,) = committed(open_store(store))
    first = open_store(store).records()
    gone = next(r for r in first if r.split == Split.train)
    name = Path(gone.source_path).name
    kept = [r for r in first if r is not gone]

    code, text = run("remove", str(store), name)
    assert code == 0 and "1 episode(s) removed" in text and name in text, text
    after = open_store(store)
    assert [r.content_hash for r in after.records()] == [r.content_hash for r in kept]
    assert list(after.episodes["episode"]) == list(range(7))  # ids are positions: the gap closes
    assert_exact_stats(str(store))

    code, text = run("relabel", str(store), "0", "--instruction", "Go to the red chair")
    assert code == 0 and "1 episode(s) relabelled" in text, text
    relabelled = open_store(store).records()[0]
    assert relabelled.instruction == "Go to the red chair" and relabelled.content_hash == kept[0].content_hash

    train = int(open_store(store).episodes.query("split == 'train'").index[0])
    code, text = run("resplit", str(store), str(train), "--to", "test")
    assert code == 0 and "1 episode(s) moved to test" in text, text
    moved = open_store(store)
    assert moved.records()[train].split == Split.test and moved.manifest.split_episodes[Split.test] == 1
    assert moved.manifest.stats != after.manifest.stats
    assert_exact_stats(str(store))
    assert frame_files(store) == frames  # three edits: not one frame byte written, none removed

    v1_, v2, v3, v4 = committed(open_store(store))
    assert v1_ == v1 and open_store(f"{store}@{v1}").records() == first  # every older version reads as it was
    assert open_store(f"{store}@{v2}").records()[0].instruction == kept[0].instruction
    code, text = run("log", str(store))
    assert "1 removed; 7 episodes" in text and "1 relabelled; 7 episodes" in text and "1 moved; 7 episodes" in text

    code, text = run("diff", str(store), v1)
    assert code == 0 and f"{v1} -> {v4}: 1 removed, 1 relabelled, 1 moved" in text and name in text, text
    assert "image mean" in text and "linear_x" in text

    code, text = run("restore", str(store), v1)
    assert code == 0 and f"restored {v1}" in text, text
    restored = open_store(store)
    assert [r.model_dump(exclude={"segment", "segment_start"}) for r in restored.records()] == [
        r.model_dump(exclude={"segment", "segment_start"}) for r in first]
    assert restored.manifest.stats == open_store(f"{store}@{v1}").manifest.stats  # exactly as that build made them
    assert len(committed(restored)) == 5 and frame_files(store) == frames
    code, text = run("diff", str(store), v1, "--json")
    assert code == 0 and '"added": []' in text and '"removed": []' in text
    assert not verify(restored)


def test_edits_select_by_query_and_from_a_csv(store: Path, tmp_path: Path) -> None:
    table = open_store(store).episodes
    scenario = table["scenario"].iloc[0]
    n = int((table["scenario"] == scenario).sum())
    code, text = run("relabel", str(store), "--where", f"scenario == '{scenario}'", "--instruction", "Turn around")
    assert code == 0 and f"{n} episode(s) relabelled" in text, text
    assert set(open_store(store).episodes.query(f"scenario == '{scenario}'")["instruction"]) == {"Turn around"}
    csv = tmp_path / "fixes.csv"
    hash_prefix = table["content_hash"].iloc[2][:10]
    csv.write_text(f"episode,instruction\n1,Go left\n{hash_prefix},Go right\n")
    code, text = run("relabel", str(store), "--from-csv", str(csv))
    assert code == 0 and "2 episode(s) relabelled" in text, text
    assert list(open_store(store).episodes["instruction"].iloc[1:3]) == ["Go left", "Go right"]
    code, text = run("relabel", str(store), "--from-csv", str(csv))  # again: nothing changes, nothing written
    assert code == 0 and "nothing to change" in text and len(committed(open_store(store))) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["remove", "{store}", "episode_nope.h5"], "no episode 'episode_nope.h5'"),
    (["remove", "{store}", "99"], "no episode 99: its episodes are 0..7"),
    (["remove", "{store}", "--where", "scenario =="], "query 'scenario ==': SyntaxError"),
    (["remove", "{store}", "--where", "n_frames > 100000"], "matches no episode"),
    (["remove", "{store}", "--where", "split == 'val'"], "would remove every episode of split val"),
    (["resplit", "{store}", "--where", "split == 'train'", "--to", "val"], "would leave no train episode"),
    (["relabel", "{store}", "0", "--instruction", "  "], "--instruction is empty"),
    (["restore", "{store}", "v000009-00000000"], "no such version"),
    (["restore", "{store}", "nightly"], "no version or tag 'nightly'"),
    (["remove", "{store}"], "name the episodes"),
])
def test_bad_edits_are_refused_and_write_nothing(store: Path, args: list[str], message: str) -> None:
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    code, text = run(*[a.format(store=store) for a in args])
    assert code in (1, 2) and message in text and "Traceback" not in text, text
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_restore_of_a_dropped_version_and_a_second_editor(store: Path) -> None:
    from vla_data.store.location import StoreLocation
    from vla_data.store.writer_lock import writer_lock

    (v1,) = committed(open_store(store))
    assert run("remove", str(store), "0")[0] == 0
    assert run("gc", str(store), "--keep-last", "0")[0] == 0  # v1's tables go; its frames stay (v2 uses them)
    code, text = run("restore", str(store), v1)
    assert code == 1 and "its data was removed by gc" in text, text
    with writer_lock(StoreLocation.of(store), wait=True):  # another build or edit holds the store
        code, text = run("remove", str(store), "0", "--no-wait")
    assert code == 1 and "is being written" in text and "Traceback" not in text, text
    assert len(open_store(store).episodes) == 7


EDITS = {"remove": ["remove", "{store}", "0", "1"], "relabel": ["relabel", "{store}", "0", "--instruction", "Halt"],
         "resplit": ["resplit", "{store}", "2", "--to", "test"], "restore": ["restore", "{store}", "{v1}"]}


@pytest.mark.parametrize("delay", [0.7, 1.3])
@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_killed_at_any_moment_leaves_one_whole_version(store: Path, edit: str, delay: float,
                                                              start: Start) -> None:
    (v1,) = committed(open_store(store))
    if edit == "restore":
        assert run("remove", str(store), "3")[0] == 0
    before = open_store(store)
    args = [a.format(store=store, v1=v1) for a in EDITS[edit]]
    proc = start([sys.executable, "-m", "pipelines.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    now = open_store(store)  # the version before, or the edit's, whole
    assert now.version == before.version or committed(now)[-2] == before.version
    assert not verify(now) and len(now.records()) in (len(before.records()), len(before.records()) - 2, 8)
    assert run("relabel", str(store), "0", "--instruction", "Stop")[0] == 0  # the next edit cleans up after it
    assert {p.name for p in (store / "versions").iterdir()} == set(committed(open_store(store)))


def test_a_removed_episode_stays_removed_when_its_source_is_built_again(clean_dir: Path, store: Path) -> None:
    """Removing a bad episode sticks: the next build from the same folder leaves its source out, saying so (by
    content: a copy under another name is left out too), and a restore brings it back."""
    (v1,) = committed(open_store(store))
    gone = open_store(store).records()[3]
    assert run("remove", str(store), "3")[0] == 0
    code, text = run("build-splits", str(clean_dir), "-o", str(store), "--image-size", "16", "--val-ratio", "0.25")
    assert code == 0 and f"1 source(s) left out: `vla-data remove` removed their episode ({gone.source_path})" in text
    assert "nothing new" in text and gone.content_hash not in set(open_store(store).episodes["content_hash"])
    assert run("restore", str(store), v1)[0] == 0
    assert gone.content_hash in set(open_store(store).episodes["content_hash"])
    code, text = run("build-splits", str(clean_dir), "-o", str(store), "--image-size", "16", "--val-ratio", "0.25")
    assert code == 0 and "left out" not in text and "nothing new" in text, text


def test_merge_keeps_splits_lists_duplicates_and_names_its_sources(clean_dir: Path, built: Path,
                                                                    tmp_path: Path) -> None:
    from conftest import first_five_and_all

    first, everything = first_five_and_all(clean_dir, tmp_path)
    (tmp_path / "late").mkdir()
    for p in sorted(everything.glob("*.h5"))[5:]:
        shutil.move(p, tmp_path / "late" / p.name)
    day1, day2 = tmp_path / "day1.zarr", tmp_path / "day2.zarr"
    assert run("build-splits", str(first), "-o", str(day1), "--image-size", "16", "--val-ratio", "0.25")[0] == 0
    assert run("build-splits", str(tmp_path / "late"), str(sorted(first.glob("*.h5"))[0]), "-o", str(day2),
               "--image-size", "16", "--val-ratio", "0.25")[0] == 0  # one episode in both stores
    out = tmp_path / "both.zarr"
    code, text = run("merge", str(day1), f"{day2}@{open_store(day2).version}", "-o", str(out))
    assert code == 0 and "8 episodes" in text and "1 duplicate(s) left out" in text, text
    merged, one, two = open_store(out), open_store(day1), open_store(day2)
    splits = {r.content_hash: r.split for s in (two, one) for r in s.records()}
    assert {r.content_hash: r.split for r in merged.records()} == splits  # every episode keeps its split
    for source in (one, two):
        for i, r in enumerate(source.records()):
            j = int(merged.episodes.index[merged.episodes["content_hash"] == r.content_hash][0])
            a, b = source.episode_range(i)
            c, d = merged.episode_range(j)
            assert np.array_equal(np.asarray(source.camera("rgb")[a:b]), np.asarray(merged.camera("rgb")[c:d]))
    assert_exact_stats(str(out))
    assert not verify(merged)
    code, text = run("log", str(out))
    assert f"merged from {day1}@{one.version}, {day2}@{two.version}" in text, text
    code, text = run("merge", str(day1), str(built), "-o", str(tmp_path / "other.zarr"))
    assert code == 0  # the same preprocessing: fine
    code, text = run("build-splits", str(first), "-o", str(tmp_path / "big.zarr"), "--image-size", "24")
    code, text = run("merge", str(day1), str(tmp_path / "big.zarr"), "-o", str(tmp_path / "bad.zarr"))
    assert code == 1 and "cannot be merged" in text and "preprocessing" in text and "cameras rgb 16x16x3 vs rgb 24x24x3" in text
    assert not (tmp_path / "bad.zarr").exists()
    code, text = run("merge", str(day1), str(day2), "-o", str(out))
    assert code == 1 and "exists already" in text


def test_a_relabel_is_kept_by_later_builds(clean_dir: Path, store: Path) -> None:
    """The source still gives the old instruction: builds neither list it as a difference nor take it back, even
    with --update-instructions (the relabel is the user's word)."""
    assert run("relabel", str(store), "2", "--instruction", "Go to the red chair")[0] == 0
    for extra in ([], ["--update-instructions"]):
        code, text = run("build-splits", str(clean_dir), "-o", str(store), "--image-size", "16", "--val-ratio", "0.25",
                         *extra)
        assert code == 0 and "instruction differs" not in text and "relabelled:" not in text, text
        assert open_store(store).records()[2].instruction == "Go to the red chair"


def test_a_hand_edited_episode_table_is_refused_by_every_reader_and_builder(clean_dir: Path, store: Path) -> None:
    table = next((store / "versions").iterdir()) / "episodes.csv"
    table.write_text(table.read_text().replace("train", "val", 1))  # moved by hand
    for args in (["info", str(store)], ["inspect-sample", str(store)], ["remove", str(store), "0"],
                 ["build-splits", str(clean_dir), "-o", str(store), "--image-size", "16", "--val-ratio", "0.25"]):
        code, text = run(*args)
        assert code == 1 and "episodes.csv: checksum mismatch" in text and "Traceback" not in text, (args, text)
    assert len(committed_versions(store)) == 1


def committed_versions(store: Path) -> list[Path]:
    return sorted((store / "versions").iterdir())


def test_resplit_from_a_split_file(store: Path, tmp_path: Path) -> None:
    records = open_store(store).records()
    train = [r for r in records if r.split == Split.train]
    rows = [f"{Path(train[0].source_path).name},test", f"{Path(train[1].source_path).name},val"]
    (tmp_path / "splits.csv").write_text("episode,split\n" + "\n".join(rows) + "\n")
    code, text = run("resplit", str(store), "--split-file", str(tmp_path / "splits.csv"))
    assert code == 0 and "2 episode(s) moved" in text, text
    now = {r.content_hash: r.split for r in open_store(store).records()}
    assert (now[train[0].content_hash], now[train[1].content_hash]) == (Split.test, Split.val)
    assert_exact_stats(str(store))
    (tmp_path / "bad.csv").write_text("episode,split\nx.h5,later\n")
    code, text = run("resplit", str(store), "--split-file", str(tmp_path / "bad.csv"))
    assert code == 1 and "the split one of train, val, test" in text, text
    code, text = run("resplit", str(store), "0", "--split-file", str(tmp_path / "splits.csv"))
    assert code == 2 and "names its episodes itself" in text


def test_a_store_given_as_a_build_source_is_named_as_one(built: Path, tmp_path: Path) -> None:
    code, text = run("build-splits", str(built), "-o", str(tmp_path / "new.zarr"), "--image-size", "16")
    assert code == 1 and "a vla-data store, not recorded episodes" in text and "vla-data merge" in text, text
    assert not (tmp_path / "new.zarr").exists()


def test_a_merge_killed_half_way_is_finished_by_the_next_and_a_second_at_once_is_refused(built: Path,
                                                                                       tmp_path: Path,
                                                                                       start: Start) -> None:
    out = tmp_path / "c.zarr"
    merge = [sys.executable, "-m", "pipelines.cli", "merge", str(built), str(built), "-o", str(out)]
    leftover = out / "segments" / "v000001-0123abcd" / "data" / "rgb"  # as a merge killed while writing leaves it
    leftover.mkdir(parents=True)
    (leftover / "zarr.json").write_text("{}")
    shutil.copy(built / "vla-data-store.json", out / "vla-data-store.json")
    first, second = (start(merge, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2))
    texts = sorted(p.communicate(timeout=120)[0] for p in (first, second))
    assert sum("wrote" in t for t in texts) == 1 and sum("exists already" in t for t in texts) == 1, texts
    merged = open_store(out)
    assert len(committed(merged)) == 1 and not verify(merged)
    assert [p.name for p in (out / "segments").iterdir()] == list(merged.manifest.segments)  # no leftover
    code, text = run("gc", str(out))
    assert code == 0 and "nothing to remove" in text
