"""Atomic writes (mediqa.engines.files): readers see the old file or the whole new one."""

from __future__ import annotations

import pytest

from mediqa.engines import files
from mediqa.engines.files import atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "plan.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in target.parent.iterdir()] == ["plan.bin"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    atomic_write_json(target, {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"v": 2})
    assert '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
