"""The settle step on its own: observations and an injected clock in, ready paths out."""

from __future__ import annotations

import os

from mediqa.agent.watch.settle import Settler


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeFiles:
    """``os.stat`` over a dict path -> (size, mtime_ns), counting calls."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, int]] = {}
        self.calls: list[str] = []

    def stat(self, path: str) -> os.stat_result:
        self.calls.append(path)
        if path not in self.files:
            raise FileNotFoundError(path)
        size, mtime_ns = self.files[path]
        return os.stat_result((0o100644, 0, 0, 1, 0, 0, size, 0, mtime_ns // 10**9, 0, 0.0, mtime_ns / 1e9,
                               0.0, 0, mtime_ns, 0))


def _settler(stable_s: float = 2.0):
    clock, fs = Clock(), FakeFiles()
    return Settler(stable_s, clock, stat=fs.stat), clock, fs


def _ready(settler: Settler) -> list[str]:
    return [path for path, _ in settler.ready()]


def test_ready_after_quiet_window_and_not_stat_inside_it():
    s, clock, fs = _settler()
    fs.files["a"] = (10, 1)
    s.observe("a", 10, 1)
    clock.now = 1.9
    assert _ready(s) == [] and fs.calls == []  # inside the window: not even stat'ed
    clock.now = 2.0
    (path, st), = s.ready()
    assert path == "a" and st.st_size == 10 and "a" in s  # still pending until taken
    s.done("a")
    assert len(s) == 0 and s.all_settling()


def test_a_write_inside_the_window_restarts_it():
    s, clock, fs = _settler()
    s.observe("a", 10, 1)
    fs.files["a"] = (20, 2)  # grew after it was observed
    clock.now = 2.5
    assert _ready(s) == []  # changed at the stat that ends the window: a new window from now
    clock.now = 4.4
    assert _ready(s) == []
    clock.now = 4.5
    assert _ready(s) == ["a"]


def test_a_new_observation_restarts_the_window_an_unchanged_one_does_not():
    s, clock, fs = _settler()
    fs.files["a"] = (30, 3)
    s.observe("a", 10, 1)
    clock.now = 1.0
    s.observe("a", 10, 1)  # same version again (a second event): the window keeps its start
    s.observe("a", 30, 3)  # a new version: starts again at 1.0
    clock.now = 2.5
    assert _ready(s) == [] and s.all_settling()
    clock.now = 3.0
    assert _ready(s) == ["a"]


def test_closed_needs_no_window_until_it_looks_half_written():
    s, clock, fs = _settler()
    fs.files["a"] = (10, 1)
    s.observe("a", 10, 1, closed=True)
    assert _ready(s) == ["a"]
    s.again("a", 10, 1)  # parsed as half-written: wait a whole window even though it was closed
    assert _ready(s) == [] and s.all_settling()
    clock.now = 2.0
    assert _ready(s) == ["a"]
    s.observe("b", 5, 1)
    s.observe("b", 5, 1, closed=True)  # the close event of the version already seen
    fs.files["b"] = (5, 1)
    assert set(_ready(s)) == {"a", "b"}


def test_vanished_files_are_forgotten():
    s, clock, fs = _settler(0.0)
    s.observe("gone", 1, 1)
    assert _ready(s) == [] and len(s) == 0


def test_default_stat_is_os_stat_looked_up_at_call_time(tmp_path, monkeypatch):
    f = tmp_path / "x"
    f.write_bytes(b"1234")
    st = f.stat()
    clock = Clock()
    s = Settler(0.0, clock)
    s.observe(str(f), st.st_size, st.st_mtime_ns)
    calls = []
    real = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    assert _ready(s) == [str(f)] and calls == [str(f)]


def test_next_window_end_is_the_earliest_settling_file_s():
    s, clock, fs = _settler()
    assert s.next_window_end_in() is None  # nothing pending: nothing to wake up for
    s.observe("a", 10, 1)
    clock.now = 0.5
    s.observe("b", 10, 1)
    clock.now = 1.5
    assert s.next_window_end_in() == 0.5  # a's window ends at 2.0
    s.observe("c", 10, 1, closed=True)  # closed: ready now, no window to wait for
    assert s.next_window_end_in() == 0.5
    clock.now = 2.2  # a is past its window (the pass indexes it); b's ends at 2.5
    assert abs(s.next_window_end_in() - 0.3) < 1e-9
