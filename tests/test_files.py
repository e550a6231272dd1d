"""vla_data.common.files: every local file vla-data writes is whole, flushed, and readable as a plain open() makes it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vla_data.common import files
from vla_data.common.files import atomic_path, create_bytes_atomic, write_bytes_atomic, write_text_atomic
from vla_data.store.location import StoreLocation


def test_a_file_is_flushed_before_it_is_renamed_into_place(tmp_path: Path, umask_022: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    done: list[str] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: done.append("fsync") or fsync(fd))
    monkeypatch.setattr(files.os, "replace", lambda a, b: done.append("replace") or replace(a, b))
    target = tmp_path / "sub" / "report.json"
    write_text_atomic(target, "{}\n")
    assert target.read_text() == "{}\n" and done == ["fsync", "replace", "fsync"]  # the file, then its folder
    assert stat.S_IMODE(target.stat().st_mode) == umask_022 and os.listdir(target.parent) == ["report.json"]
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "{}\n" and os.listdir(target.parent) == ["report.json"]  # the old one, no leftover


def test_create_writes_only_where_nothing_is(tmp_path: Path, umask_022: int) -> None:
    target = tmp_path / "lease.json"
    assert create_bytes_atomic(target, b"first") and not create_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"first" and stat.S_IMODE(target.stat().st_mode) == umask_022
    assert os.listdir(tmp_path) == ["lease.json"]
    write_bytes_atomic(target, b"third")
    assert target.read_bytes() == b"third"


def test_local_store_objects_go_through_the_one_helper(tmp_path: Path, umask_022: int) -> None:
    store = StoreLocation.of(tmp_path / "ds.zarr")
    store.write("versions/v1/manifest.json", b"{}")
    assert store.create("marker.json", b"{}") and not store.create("marker.json", b"[]")
    for key in ("versions/v1/manifest.json", "marker.json"):
        path = tmp_path / "ds.zarr" / key
        assert path.read_bytes() == b"{}" and stat.S_IMODE(path.stat().st_mode) == umask_022
    assert sorted(store.keys()) == ["marker.json", "versions/v1/manifest.json"]  # no temporaries left
