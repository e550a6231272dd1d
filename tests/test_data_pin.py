"""A run learns from one exact store version and says so: the saved config and every checkpoint name the store's
absolute location and version (and the manifest's sha256); --resume reads that version whatever the store
became, from any folder, and refuses once it is gone; eval's metrics name the version scored and the one trained
on, and say when they differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import committed, first_five_and_all
from conftest import run_cli as run
from schemas.train import CheckpointMeta
from vla_data.store.reader import open_store

TRAIN = ["--model", "tiny-random", "--window", "2", "--chunk", "4", "--hidden", "16", "--lora-r", "4",
         "--batch-size", "4", "--val-every", "2", "--val-batches", "1", "--save-every", "2"]


def _meta(run_dir: Path, step: int) -> CheckpointMeta:
    return CheckpointMeta.model_validate_json((run_dir / f"checkpoint-{step}" / "checkpoint.json").read_text())


def test_a_run_trains_resumes_and_is_scored_on_its_pinned_version(clean_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first, everything = first_five_and_all(clean_dir, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the store given relative: the run must record where it really is
    assert run("build-splits", str(first), "-o", "ds.zarr", "--image-size", "56", "--val-ratio", "0.3")[0] == 0
    store = (work / "ds.zarr").resolve()
    (v1,) = committed(open_store(store))
    code, text = run("train", "ds.zarr", "-o", "run", "--max-steps", "2", *TRAIN)
    assert code == 0, text
    config = json.loads((work / "run" / "train_config.json").read_text())
    assert config["data"]["store"] == f"{store}@{v1}"
    pinned = _meta(work / "run", 2).data
    assert pinned is not None and pinned.store == str(store) and pinned.version == v1 and len(pinned.manifest_sha256) == 64

    # the store grows; the run, resumed from another folder, goes on with the data it started on
    assert run("build-splits", str(everything), "-o", str(store), "--image-size", "56", "--val-ratio", "0.3")[0] == 0
    v2 = open_store(store).version
    assert v2 != v1 and open_store(store).manifest.n_episodes == 8 and open_store(f"{store}@{v1}").manifest.n_episodes == 5
    monkeypatch.chdir(tmp_path)
    code, text = run("train", "--resume", str(work / "run"), "--max-steps", "4")
    assert code == 0, text
    assert _meta(work / "run", 4).data == pinned and _meta(work / "run", 4).stats == open_store(f"{store}@{v1}").manifest.stats

    # eval names the version it scores and the one trained on, and says they differ
    code, text = run("eval", str(work / "run"), str(store), "--split", "val", "-o", "ev")
    assert code == 0, text
    assert f"data: {store}@{v2}; the checkpoint trained on {store}@{v1}: not the same data" in text
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["data"]["version"] == v2 and metrics["trained_on"]["version"] == v1
    code, text = run("eval", str(work / "run"), f"{store}@{v1}", "--split", "val", "-o", "ev1")
    assert code == 0 and f"data: {store}@{v1}, the version the checkpoint trained on" in text, text

    # view --run says the same of the data it shows the policy's predictions on
    code, text = run("view", f"{store}@{v1}", "--run", str(work / "run"), "--split", "val", "--max-episodes", "1",
                     "--save", str(tmp_path / "v1.rrd"))
    assert code == 0 and f"data: {store}@{v1}, the version the checkpoint trained on" in text, text
    code, text = run("view", str(store), "--run", str(work / "run"), "--max-episodes", "1", "--save",
                     str(tmp_path / "v2.rrd"))
    assert code == 0 and f"the checkpoint trained on {store}@{v1}: not the same data (since: 3 added" in text, text
    assert "shown episode(s) were training episodes" in text  # every split shown: its train episodes too

    # re-split so that its training episodes land in val: scoring val is refused, unless asked knowingly
    names = sorted(p.name for p in everything.glob("*.h5"))
    (tmp_path / "splits.csv").write_text("episode,split\n" + "".join(f"{n},{'train' if i == 0 else 'val'}\n"
                                                                    for i, n in enumerate(names)))
    assert run("build-splits", str(everything), "-o", str(store), "--image-size", "56", "--overwrite",
               "--split-file", str(tmp_path / "splits.csv"))[0] == 0
    code, text = run("eval", str(work / "run"), str(store), "--split", "val", "-o", "ev2")
    assert code == 1 and "episode(s) the checkpoint trained on" in text and "--allow-train-overlap" in text, text
    assert not (tmp_path / "ev2" / "metrics.json").exists()
    code, text = run("eval", str(work / "run"), str(store), "--split", "val", "-o", "ev2", "--allow-train-overlap")
    assert code == 0 and "were training episodes (allowed)" in text, text
    trained = json.loads((tmp_path / "ev2" / "metrics.json").read_text())["trained_episodes_scored"]
    first_train = open_store(f"{store}@{v1}").episodes.query("split == 'train'")["source_path"]
    expected = {Path(p).name for p in first_train} - {names[0]}  # the same recordings, copied under all/
    assert expected and sorted(Path(p).name for p in trained) == sorted(expected)

    # once its version is dropped, the run cannot continue exactly: refused, saying why
    assert run("gc", str(store), "--keep-last", "0")[0] == 0
    code, text = run("train", "--resume", str(work / "run"), "--max-steps", "6")
    assert code == 1 and f"version {v1}: its data was removed by gc" in text and "Traceback" not in text
    code, text = run("eval", str(work / "run"), str(store), "--split", "val", "-o", "ev3")  # cannot tell: it says so
    assert code == 0 and "no longer readable" in text and "could not be checked" in text, text
    assert json.loads((tmp_path / "ev3" / "metrics.json").read_text())["overlap_checked"] is False
