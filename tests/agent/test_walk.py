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


# --- links, loops and depth (issue: never down, never silent, never wrong-and-live) -----------------------
def _rel(paths, root):
    return [os.path.relpath(p, root) for p in paths]


def test_links_are_followed_only_inside_the_export_root(tmp_path):
    outside = tmp_path / "outside"
    _touch(outside / "secret.dcm")
    root = tmp_path / "export"
    _touch(root / "real" / "a.dcm")
    os.symlink(outside / "secret.dcm", root / "file_out.dcm")  # a file link leaving the root
    os.symlink(outside, root / "dir_out")  # a folder link leaving the root
    os.symlink(root / "real" / "a.dcm", root / "file_in.dcm")  # links that stay inside
    os.symlink(root / "real", root / "dir_in")
    problems: list[tuple[str, str]] = []
    got = _rel(walk_files(root, on_problem=lambda kind, rel: problems.append((kind, rel))), root)
    assert "file_out.dcm" not in got and not any(p.startswith("dir_out") for p in got)
    assert "file_in.dcm" in got
    # the linked folder is listed once, by whichever name the walk reaches first (sorted: dir_in)
    assert ("dir_in/a.dcm" in got) != ("real/a.dcm" in got)
    assert ("link_outside", "file_out.dcm") in problems and ("link_outside", "dir_out") in problems
    never: list[tuple[str, str]] = []
    got = _rel(walk_files(root, follow_links="never", on_problem=lambda k, r: never.append((k, r))), root)
    assert got == ["real/a.dcm"]
    assert {k for k, _ in never} == {"link_skipped"} and len(never) == 4


def test_a_link_to_a_parent_does_not_loop(tmp_path):
    root = tmp_path / "export"
    _touch(root / "a" / "1.dcm")
    os.symlink("..", root / "a" / "up")  # a -> .. -> a -> ...
    os.symlink(".", root / "self")
    problems: list[tuple[str, str]] = []
    got = _rel(walk_files(root, on_problem=lambda k, r: problems.append((k, r))), root)
    assert got == ["a/1.dcm"]
    assert sorted(problems) == [("link_loop", "a/up"), ("link_loop", "self")]
    os.symlink("../..", root / "a" / "out")  # the export root's parent: outside
    problems.clear()
    assert _rel(walk_files(root, on_problem=lambda k, r: problems.append((k, r))), root) == ["a/1.dcm"]
    assert ("link_outside", "a/out") in problems


def test_folders_deeper_than_max_depth_are_cut_and_reported_once(tmp_path, caplog):
    root = tmp_path / "export"
    _touch(root / "top.dcm")
    _touch(root / "P^JANE" / "s1" / "s2" / "deep.dcm")
    _touch(root / "P^JANE" / "s1" / "s2b" / "deep.dcm")
    _touch(root / "P^JANE" / "mid.dcm")
    problems: list[tuple[str, str]] = []
    caplog.set_level(logging.DEBUG)
    got = _rel(walk_files(root, max_depth=2, on_problem=lambda k, r: problems.append((k, r))), root)
    assert got == ["top.dcm", "P^JANE/mid.dcm"]
    assert sorted(problems) == [("too_deep", "P^JANE/s1/s2"), ("too_deep", "P^JANE/s1/s2b")]
    assert "max_depth" in caplog.text and "JANE" not in caplog.text
    assert len(_rel(walk_files(root, max_depth=3), root)) == 4


def test_a_rescan_of_a_subfolder_keeps_the_export_roots_rules(tmp_path):
    root = tmp_path / "export"
    _touch(root / "new" / "a" / "b" / "x.dcm")
    _touch(tmp_path / "elsewhere" / "y.dcm")
    os.symlink(tmp_path / "elsewhere", root / "new" / "link")
    got = _rel(walk_files(root / "new", max_depth=2, within=root), root)
    assert got == []  # new/a is depth 2, new/a/b depth 3 > 2; the link leaves the export root
    got = _rel(walk_files(root / "new", max_depth=3, within=root), root)
    assert got == ["new/a/b/x.dcm"]
    os.symlink(tmp_path / "elsewhere", root / "linked")  # a new folder that is itself a link out of the root
    problems: list[tuple[str, str]] = []
    assert list(walk_files(root / "linked", within=root, on_problem=lambda k, r: problems.append((k, r)))) == []
    assert problems == [("link_outside", "linked")]


def test_only_regular_files_are_yielded(tmp_path):
    root = tmp_path / "export"
    _touch(root / "a.dcm")
    os.mkfifo(root / "pipe.dcm")  # reading a FIFO blocks: the one-shot scan would hang on it
    os.symlink(root / "missing", root / "dangling.dcm")
    assert _rel(walk_files(root), root) == ["a.dcm"]


def test_follow_links_is_checked(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="follow_links"):
        list(walk_files(tmp_path, follow_links="always"))
