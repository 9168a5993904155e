"""The one folder walk shared by the agent's reconcile scan and ``scan_tree``."""

from __future__ import annotations

import logging
import os

from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.watch.walk import walk_files


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_one_filter_sorted_per_folder(tmp_path):
    for rel in ("b/2.dcm", "b/1.dcm", "a/z", "a/DICOMDIR", "a/dicomdir", "LICENSE", "license", ".hidden",
                ".sync/1.dcm", "a/.part.dcm", "top.dcm", "c/d/e.dcm"):
        _touch(tmp_path / rel)
    got = [os.path.relpath(p, tmp_path) for p in walk_files(tmp_path)]
    assert got == ["top.dcm", "a/z", "b/1.dcm", "b/2.dcm", "c/d/e.dcm"]


def test_a_file_root_is_itself_and_paths_are_normalised(tmp_path, monkeypatch):
    _touch(tmp_path / "one.dcm")
    assert list(walk_files(tmp_path / "one.dcm")) == [str(tmp_path / "one.dcm")]
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "sub" / "x")
    assert list(walk_files("./sub/")) == [os.path.join("sub", "x")]


def test_unreadable_folder_is_logged_relative_to_the_root(tmp_path, monkeypatch, caplog):
    secret = tmp_path / "DOE^JANE 1970-01-01"  # consoles name folders after patients
    _touch(secret / "ok.dcm")
    _touch(secret / "locked" / "no.dcm")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    caplog.set_level(logging.WARNING)
    assert list(walk_files(secret)) == [str(secret / "ok.dcm")]
    assert "cannot list folder locked" in caplog.text
    assert "DOE^JANE" not in caplog.text and str(tmp_path) not in caplog.text


def test_scan_tree_uses_the_same_walk(tmp_path):
    write_phantom_ct(tmp_path / "ct", noise_hu=5.0, seed=0, slices=3, size=32)
    (tmp_path / ".hidden").mkdir()
    for p in sorted((tmp_path / "ct").iterdir()):  # a hidden copy: skipped by the walk, like the agent does
        (tmp_path / ".hidden" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "ct" / "LICENSE").write_text("CC-BY")
    skipped: dict[str, str] = {}
    (records,) = scan_tree(tmp_path, skipped=skipped).values()
    assert [os.path.basename(r.path) for r in records] == ["0000.dcm", "0001.dcm", "0002.dcm"]
    assert skipped == {}
