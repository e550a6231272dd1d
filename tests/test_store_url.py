"""Stores addressed by URL: every command that reads a store opens a ``file://`` URL through zarr's FsspecStore
(the path object storage takes) and sees exactly what the local path gives. Object storage itself (a real S3
API) is tested in test_object_storage.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from zarr.storage import FsspecStore, LocalStore

from conftest import segment_dir
from conftest import run_cli as run
from vla_data.samples.dataset import WindowDataset
from vla_data.store.location import StoreLocation
from vla_data.store.reader import open_store, verify


def url_of(path: Path) -> str:
    return path.resolve().as_uri()  # file:///...


def test_a_url_opens_through_fsspec_and_reads_what_the_path_reads(learn_store: Path) -> None:
    by_path, by_url = open_store(learn_store), open_store(url_of(learn_store))
    assert isinstance(by_path.location.zarr_store(), LocalStore)
    assert isinstance(by_url.location.zarr_store(), FsspecStore) and not by_url.location.is_local
    assert by_url.manifest == by_path.manifest and by_url.episodes.equals(by_path.episodes)
    np.testing.assert_array_equal(by_url.camera("rgb")[:5], by_path.camera("rgb")[:5])
    assert by_url.build_log() == by_path.build_log()
    assert verify(by_url) == verify(by_path) == []
    a, b = WindowDataset(learn_store, "val", memory_budget=0)[3], WindowDataset(url_of(learn_store), "val")[3]
    assert torch.equal(a["rgb"]["rgb"], b["rgb"]["rgb"]) and torch.equal(a["actions"], b["actions"])


def test_info_and_inspect_sample_take_a_url(learn_store: Path, tmp_path: Path) -> None:
    url = url_of(learn_store)
    code, by_url = run("info", url, "--verify")
    code_path, by_path = run("info", str(learn_store), "--verify")
    assert code == code_path == 0 and "all checksums match" in by_url
    assert by_url.replace(url, "STORE") == by_path.replace(str(learn_store), "STORE")  # also the size on disk
    code, text = run("inspect-sample", url, "--index", "1", "--json")
    assert code == 0 and json.loads(text) == json.loads(run("inspect-sample", str(learn_store), "--index", "1",
                                                                "--json")[1])


def test_train_and_eval_take_a_url(learn_store: Path, tmp_path: Path) -> None:
    url = url_of(learn_store)
    common = ["--model", "tiny-random", "--max-steps", "2", "--window", "2", "--chunk", "2", "--batch-size", "4",
              "--hidden", "16", "--lora-r", "2", "--val-every", "2", "--save-every", "2", "--val-batches", "1"]
    code, text = run("train", url, "-o", str(tmp_path / "run"), *common)
    assert code == 0, text
    pinned = f"{url}@{open_store(url).version}"  # the run names the exact version it read
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["data"]["store"] == pinned
    code, text = run("eval", str(tmp_path / "run"), url, "-o", str(tmp_path / "eval"))
    assert code == 0 and f"on {url}" in text, text


def test_a_damaged_object_is_found_through_the_url(learn_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(learn_store, copy)
    shard = [p for p in (segment_dir(copy) / "data" / "rgb" / "c").rglob("*") if p.is_file()][-1]
    shard.write_bytes(b"\0" + shard.read_bytes()[1:])
    code, text = run("info", url_of(copy), "--verify")
    assert code == 1 and "data/rgb/c/" in text and "checksum mismatch" in text


def test_urls_that_cannot_be_read_or_written_are_refused_by_name(learn_store: Path, tmp_path: Path) -> None:
    code, text = run("info", url_of(tmp_path / "nothing.zarr"))
    assert code == 1 and "no vla-data store there" in text and "Traceback" not in text
    code, text = run("info", "nosuchscheme://bucket/dataset.zarr")
    assert code == 1 and "cannot open nosuchscheme:// stores here" in text
    assert StoreLocation.of("s3://b/x/").child("data/rgb").url == "s3://b/x/data/rgb"


@pytest.mark.parametrize("command", [["build-splits", "unused", "-o"], ["info"], ["gc"], ["log"], ["remove"]])
def test_a_url_without_bucket_is_one_message(command: list[str], tmp_path: Path) -> None:
    args = [*command, "s3://"] if command[0] != "build-splits" else ["build-splits", str(tmp_path), "-o", "s3://"]
    code, text = run(*args, *(["0"] if command == ["remove"] else []))
    assert code == 1 and "s3://: no bucket or path after s3://" in text and "Traceback" not in text, text
    assert not (Path.cwd() / "s3:").exists()
