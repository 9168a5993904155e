"""A folder tree 1,100 levels deep (past Python's recursion limit): the walk and the watcher stay up.

Python 3.11's os.walk recurses, and so did watchdog's inotify setup and still do its polling snapshots: each
raised RecursionError on such a tree (the native watch on Linux is now this package's iterative reader).
The fixture builds it iteratively and removes it iteratively.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from pathlib import Path

import pytest
from poison import DEEP, make_deep_tree

from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.watch import inotify, walk
from mediqa.agent.watch.walk import walk_files
from mediqa.agent.watch.watcher import FolderWatcher, PathEvent

linux = pytest.mark.skipif(not inotify.available(), reason="inotify (Linux)")


def _rel(paths, root):
    return [os.path.relpath(p, root) for p in paths]


@pytest.mark.slow
def test_walk_cuts_the_deep_tree_once_and_keeps_going(deep_tree, caplog):
    root, _ = deep_tree
    problems: list[tuple[str, str]] = []
    caplog.set_level(logging.DEBUG)
    started = time.perf_counter()
    got = _rel(walk_files(root, on_problem=lambda kind, rel: problems.append((kind, rel))), root)
    assert time.perf_counter() - started < 5.0
    assert got == ["ok/1.dcm"]
    assert problems == [("too_deep", os.path.join(*["d"] * 33))]
    assert caplog.text.count("deeper than watch.max_depth") == 1


@pytest.mark.slow
def test_walk_without_a_depth_limit_does_not_recurse(deep_tree):
    root, deepest = deep_tree
    got = list(walk_files(root, max_depth=DEEP + 10))
    assert got == [str(deepest / "deep.dcm"), str(root / "ok" / "1.dcm")]


def test_scan_tree_and_depth_probe_on_the_deep_tree(deep_tree):
    root, _ = deep_tree
    skipped: dict[str, str] = {}
    assert scan_tree(root, skipped=skipped) == {} and skipped == {str(root / "ok" / "1.dcm"): "not_dicom"}
    assert walk.tree_deeper_than(root, 32) and walk.tree_deeper_than(root, DEEP - 1)
    assert not walk.tree_deeper_than(root, DEEP)


def _events_for(events: queue.Queue[PathEvent], name: str, timeout: float = 5.0) -> list[PathEvent]:
    deadline = time.monotonic() + timeout
    seen: list[PathEvent] = []
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(event)
        if os.path.basename(event.path) == name:
            return seen
    return seen


@pytest.mark.slow
@linux
def test_the_native_watch_on_a_deep_tree_stops_at_max_depth(deep_tree):
    """The inotify reader adds its watches iteratively, down to watch.max_depth: no fallback needed."""
    root, _ = deep_tree
    events: queue.Queue[PathEvent] = queue.Queue()
    watcher = FolderWatcher(root, events, "native")
    watcher.start()
    try:
        assert watcher.alive() and watcher.failure() is None and watcher.recursive
        assert watcher._observer.watches == 1 + 1 + 32  # the root, ok/, and d/ ... down to depth 32
        (root / "new.dcm").write_bytes(b"x")
        assert any(e.path == str(root / "new.dcm") for e in _events_for(events, "new.dcm"))
    finally:
        watcher.stop()
    assert not watcher.alive() and watcher.failure() is None


@pytest.mark.slow
def test_polling_on_a_deep_tree_falls_back_to_the_top_folder(deep_tree):
    root, _ = deep_tree
    events: queue.Queue[PathEvent] = queue.Queue()
    watcher = FolderWatcher(root, events, "polling", poll_interval_s=0.2)
    watcher.start()  # raised RecursionError (watchdog's first snapshot)
    try:
        assert watcher.alive()
        assert "watch.max_depth" in (watcher.failure() or "")
        assert not watcher.recursive
        time.sleep(0.3)
        (root / "new.dcm").write_bytes(b"x")
        assert any(e.path == str(root / "new.dcm") for e in _events_for(events, "new.dcm"))
    finally:
        watcher.stop()
    assert not watcher.alive() and watcher.failure() is None


@pytest.mark.slow
@linux
def test_watcher_survives_a_deep_tree_moved_in(tmp_path, deep_tree):
    """Moved in while watching: the reader adds watches for it down to watch.max_depth, in its thread."""
    root, _ = deep_tree
    export = tmp_path / "watched"
    (export / "a").mkdir(parents=True)
    events: queue.Queue[PathEvent] = queue.Queue()
    watcher = FolderWatcher(export, events, "native")
    watcher.start()
    try:
        assert watcher.alive() and watcher.failure() is None and watcher.recursive
        os.rename(root / "d", export / "a" / "d")  # 1,100 levels arrive at once
        deadline = time.monotonic() + 10
        while watcher._observer.watches < 2 + 31 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher._observer.watches == 2 + 31  # the root, a/, and d/ ... down to depth 32
        assert watcher.failure() is None
        assert watcher.alive()  # the thread kept running ...
        (export / "a" / "after.dcm").write_bytes(b"x")  # ... so later events still arrive
        seen = _events_for(events, "after.dcm")
        assert any(e.path == str(export / "a" / "after.dcm") for e in seen)
        # events from below watch.max_depth are dropped, as the walk drops those folders
        assert all(len(os.path.relpath(e.path, export).split(os.sep)) <= 33 for e in seen)
    finally:
        watcher.stop()


def test_deep_tree_created_level_by_level_while_watching(tmp_path):
    """Made one folder at a time under a live watch: events stop at watch.max_depth, nothing dies."""
    export = tmp_path / "watched"
    export.mkdir()
    events: queue.Queue[PathEvent] = queue.Queue()
    watcher = FolderWatcher(export, events, "native", max_depth=4)
    watcher.start()
    try:
        deepest = make_deep_tree(export, 8)
        (deepest / "x.dcm").write_bytes(b"x")
        (export / "top.dcm").write_bytes(b"x")
        seen = _events_for(events, "top.dcm")
        assert all(len(os.path.relpath(e.path, export).split(os.sep)) <= 5 for e in seen), seen
        assert watcher.alive()
    finally:
        watcher.stop()


@pytest.mark.parametrize("mode", ["native", "polling"])
def test_a_dead_watch_thread_is_reported(tmp_path, mode):
    events: queue.Queue[PathEvent] = queue.Queue()
    watcher = FolderWatcher(tmp_path, events, mode, poll_interval_s=0.2)
    watcher.start()
    try:
        assert watcher.alive() and watcher.failure() is None
        observer = watcher._observer
        if isinstance(observer, inotify.InotifyTree):  # as if it had died
            observer._stopping.set()
            observer.thread.join(5)
        else:
            for emitter in list(observer.emitters):
                emitter.stop()
                emitter.join(5)
        assert not watcher.alive()
        assert "stopped" in (watcher.failure() or "")
    finally:
        watcher.stop()


def test_a_watch_that_cannot_start_is_reported_not_raised(tmp_path):
    watcher = FolderWatcher(tmp_path / "missing", queue.Queue(), "native")
    watcher.start()
    try:
        assert not watcher.alive() and "could not start" in (watcher.failure() or "")
    finally:
        watcher.stop()


def test_watcher_ignores_links_leaving_the_root(tmp_path):
    export, outside = tmp_path / "export", tmp_path / "outside"
    export.mkdir()
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(b"x")
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(export, events, "native"):
        os.symlink(outside / "secret.dcm", export / "link.dcm")
        (export / "real.dcm").write_bytes(b"x")
        seen = _events_for(events, "real.dcm")
    assert not any(Path(e.path).name == "link.dcm" for e in seen)
