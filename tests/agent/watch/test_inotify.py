"""The Linux native watch (``agent/watch/inotify.py``): one event per file however it was written, folders
appearing, moving within the tree and leaving it, a lost event queue, the watch limit, and nothing left
running after ``stop``."""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import struct
import time
from pathlib import Path

import pytest

from mediqa.agent.watch import inotify
from mediqa.agent.watch.watcher import FolderWatcher, PathEvent

pytestmark = pytest.mark.skipif(not inotify.available(), reason="inotify (Linux)")


def _until(events: queue.Queue[PathEvent], name: str, timeout_s: float = 5.0) -> list[PathEvent]:
    """Events until one for a file named ``name``, and a moment more."""
    seen: list[PathEvent] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            seen.append(events.get(timeout=0.05))
        except queue.Empty:
            continue
        if os.path.basename(seen[-1].path) == name:
            deadline = min(deadline, time.monotonic() + 0.2)
    return seen


def test_each_file_is_one_event_however_it_was_written(tmp_path):
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(tmp_path, events, "native"):
        for i in range(50):  # a console's way: a dot name, then renamed into place
            part = tmp_path / f".I{i:04d}.part"
            part.write_bytes(bytes(1000))
            os.replace(part, tmp_path / f"I{i:04d}")
        with open(tmp_path / "direct.dcm", "wb") as fh:  # written in place, in many writes
            for _ in range(16):
                fh.write(bytes(65536))
        seen = _until(events, "direct.dcm")
    renamed = [e for e in seen if os.path.basename(e.path).startswith("I")]
    assert sorted(e.path for e in renamed) == [str(tmp_path / f"I{i:04d}") for i in range(50)]
    assert all(e.closed for e in renamed)
    direct = [e for e in seen if e.path.endswith("direct.dcm")]
    assert direct[-1].closed and len(direct) <= 2  # created (maybe), then closed: no event per write
    assert not [e for e in seen if "/." in e.path]


def test_a_folder_moved_in_is_walked_and_then_watched(tmp_path):
    export, outside = tmp_path / "export", tmp_path / "outside"
    export.mkdir()
    (outside / "series" / "deeper").mkdir(parents=True)
    (outside / "series" / "I1").write_bytes(b"x")
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(export, events, "native") as watcher:
        os.rename(outside / "series", export / "series")
        seen = _until(events, "series")
        assert PathEvent(str(export / "series"), rescan=True) in seen  # its files raised no event: walk it
        (export / "series" / "deeper" / "I2").write_bytes(b"x")  # its sub-folder is watched too
        seen = _until(events, "I2")
        assert PathEvent(str(export / "series" / "deeper" / "I2"), closed=True) in seen
        assert watcher._observer.watches == 3


def test_a_folder_renamed_within_the_tree_reports_its_new_paths(tmp_path):
    (tmp_path / "old" / "sub").mkdir(parents=True)
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(tmp_path, events, "native"):
        os.rename(tmp_path / "old", tmp_path / "new")
        _until(events, "new")
        (tmp_path / "new" / "sub" / "I1").write_bytes(b"x")
        seen = _until(events, "I1")
    assert PathEvent(str(tmp_path / "new" / "sub" / "I1"), closed=True) in seen
    assert not [e for e in seen if "/old" in e.path]


def test_a_folder_moved_out_loses_its_watches(tmp_path):
    export, away = tmp_path / "export", tmp_path / "away"
    (export / "s").mkdir(parents=True)
    away.mkdir()
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(export, events, "native") as watcher:
        os.rename(export / "s", away / "s")
        deadline = time.monotonic() + 5
        while watcher._observer.watches > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        (away / "s" / "I1").write_bytes(b"x")  # no longer below the export root: not its event
        (export / "here").write_bytes(b"x")
        seen = _until(events, "here")
        assert watcher._observer.watches == 1
    assert {e.path for e in seen} == {str(export / "here")}


def test_a_lost_event_queue_asks_for_a_walk_of_the_whole_tree(tmp_path):
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(tmp_path, events, "native") as watcher:
        overflow = struct.pack("iIII", -1, inotify.IN_Q_OVERFLOW, 0, 0)  # as the kernel writes it
        watcher._observer._handle(overflow)
        assert events.get(timeout=1) == PathEvent(str(tmp_path), rescan=True)


def test_the_watch_limit_is_reported_and_the_rest_still_watched(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    real = inotify._libc()
    calls = {"n": 0}

    class Limited:  # the kernel's answer once fs.inotify.max_user_watches is reached
        def __getattr__(self, name):
            return getattr(real, name)

        def inotify_add_watch(self, fd, path, mask):
            calls["n"] += 1
            if calls["n"] > 2:
                ctypes.set_errno(errno.ENOSPC)
                return -1
            return real.inotify_add_watch(fd, path, mask)

    monkeypatch.setattr(inotify, "_libc", lambda: Limited())
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(tmp_path, events, "native") as watcher:
        assert watcher.alive() and watcher._observer.watches == 2
        assert "max_user_watches" in (watcher.failure() or "")
        (tmp_path / "top.dcm").write_bytes(b"x")
        assert PathEvent(str(tmp_path / "top.dcm"), closed=True) in _until(events, "top.dcm")


def test_the_export_folder_removed_is_reported(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    watcher = FolderWatcher(export, queue.Queue(), "native")
    watcher.start()
    try:
        export.rmdir()
        deadline = time.monotonic() + 5
        while watcher.failure() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "removed" in (watcher.failure() or "")
        assert str(export) not in (watcher.failure() or "")  # no path in what is reported
    finally:
        watcher.stop()


def test_stop_closes_the_descriptors_and_ends_the_thread(tmp_path):
    before = set(os.listdir("/proc/self/fd"))
    watcher = FolderWatcher(Path(tmp_path), queue.Queue(), "native")
    watcher.start()
    thread = watcher._observer.thread
    assert thread.is_alive()
    watcher.stop()
    assert not thread.is_alive()
    assert set(os.listdir("/proc/self/fd")) <= before
