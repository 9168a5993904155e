"""The watch thread's cost during a burst: the native watch asks the OS only for what the loop needs
(files created, moved in, closed after writing; folders created or moved in), drops the walk's dot files,
and the loop offers a path once however many events it had."""

from __future__ import annotations

import os
import queue
import sys
import time
from pathlib import Path

import pytest
from test_reliability_support import Clock, agent

from mediqa.agent.watch import inotify
from mediqa.agent.watch.watcher import FolderWatcher, PathEvent

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")


def _collect(events: queue.Queue[PathEvent], until: str, timeout_s: float = 10.0) -> list[PathEvent]:
    """Events until one for a file named ``until`` arrived, and a moment more."""
    seen: list[PathEvent] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            seen.append(events.get(timeout=0.1))
        except queue.Empty:
            continue
        if os.path.basename(seen[-1].path) == until:
            deadline = min(deadline, time.monotonic() + 0.3)
    return seen


@linux
def test_the_native_watch_asks_for_close_move_and_create_events_only(tmp_path):
    from watchdog.observers.inotify_c import InotifyConstants as C  # the kernel's numbers, from another source

    watcher = FolderWatcher(tmp_path, queue.Queue(), "native")
    watcher.start()
    try:
        assert isinstance(watcher._observer, inotify.InotifyTree)  # this package's reader, not watchdog's
    finally:
        watcher.stop()
    mask = inotify.WATCH_MASK
    assert mask & C.IN_CLOSE_WRITE and mask & C.IN_CREATE and mask & C.IN_MOVED_TO
    for unwanted in (C.IN_MODIFY, C.IN_ATTRIB, C.IN_OPEN, C.IN_CLOSE_NOWRITE, C.IN_ACCESS, C.IN_DELETE):
        assert not mask & unwanted
    for name in ("IN_CLOSE_WRITE", "IN_MOVED_FROM", "IN_MOVED_TO", "IN_CREATE", "IN_Q_OVERFLOW", "IN_IGNORED",
                 "IN_ONLYDIR", "IN_DONT_FOLLOW", "IN_EXCL_UNLINK", "IN_ISDIR"):
        assert getattr(inotify, name) == getattr(C, name), name


@pytest.mark.slow
@linux
def test_a_file_written_in_many_chunks_is_a_couple_of_events(tmp_path):
    events: queue.Queue[PathEvent] = queue.Queue()
    with FolderWatcher(tmp_path, events, "native"):
        time.sleep(0.2)
        with open(tmp_path / "big.dcm", "wb") as fh:
            for _ in range(32):  # 2 MiB in 64 KiB writes, as ``cp`` writes: 32 IN_MODIFY without the filter
                fh.write(bytes(65536))
                fh.flush()
        (tmp_path / ".part").write_bytes(b"x")  # a dot file, as a copy in progress: not an event
        (tmp_path / "last.dcm").write_bytes(b"x")
        seen = _collect(events, "last.dcm")
    big = [e for e in seen if e.path == str(tmp_path / "big.dcm")]
    assert 1 <= len(big) <= 2 and big[-1].closed  # created (maybe), then closed after writing
    assert not [e for e in seen if os.path.basename(e.path).startswith(".")]


@pytest.mark.slow
@linux
def test_a_file_moved_into_place_is_one_event(tmp_path):
    events: queue.Queue[PathEvent] = queue.Queue()
    (tmp_path / "s").mkdir()
    with FolderWatcher(tmp_path, events, "native"):
        time.sleep(0.2)
        tmp = tmp_path / "s" / ".I0001.part"
        tmp.write_bytes(bytes(100000))
        os.replace(tmp, tmp_path / "s" / "I0001")
        (tmp_path / "s" / "last.dcm").write_bytes(b"x")
        seen = _collect(events, "last.dcm")
    assert [e.path for e in seen if "I0001" in e.path] == [str(tmp_path / "s" / "I0001")]


def test_the_loop_offers_a_path_once_however_many_events_it_had(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    a = agent(state, export, clock)
    a.step()
    target = export / "x.dcm"
    target.write_bytes(b"not dicom")
    offered: list[tuple[str, bool]] = []
    a.offer = lambda path, closed=False: offered.append((path, closed))  # type: ignore[method-assign]
    for i in range(50):  # one modification event per write, then the close
        a.events.put(PathEvent(str(target), closed=i == 49))
    a.events.put(PathEvent(str(export / "y.dcm")))
    a.step()
    assert offered == [(str(target), True), (str(export / "y.dcm"), False)]
    assert a.stats.last_file_event_at == clock.now


@pytest.mark.slow
def test_polling_still_sees_files_rewritten_in_place(tmp_path):
    events: queue.Queue[PathEvent] = queue.Queue()
    target = Path(tmp_path / "a.dcm")
    target.write_bytes(b"x")
    with FolderWatcher(tmp_path, events, "polling", poll_interval_s=0.1):
        time.sleep(0.4)
        target.write_bytes(b"xy")  # no close events when polling: the modification is the sign
        os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
        seen = _collect(events, "a.dcm", timeout_s=5.0)
    assert any(e.path == str(target) for e in seen)


@linux
def test_the_running_agent_on_linux_does_not_load_watchdog(tmp_path):
    """watchdog serves polling and other systems only (~5.6 MB resident): not loaded for the inotify watch."""
    import subprocess

    code = ("import queue, sys; from pathlib import Path; import mediqa.agent.runtime, mediqa.agent.service; "
            "from mediqa.agent.watch.watcher import FolderWatcher; "
            f"w = FolderWatcher(Path({str(tmp_path)!r}), queue.SimpleQueue(), 'native'); w.start(); "
            "print(w.alive(), sorted(m for m in sys.modules if m.split('.')[0] == 'watchdog')); w.stop()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "[]"], out.stdout + out.stderr
