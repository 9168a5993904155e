"""How long a pass with nothing to do waits for a file event: until the next thing falls due, at most a tick.

Why: the loop waited a whole tick (0.2 s) whenever every pending file was inside its quiet window, so a
file without a close event (a network share, a folder walked, a file made before its folder's watch) was
indexed up to a tick after its window ended, and a series quiet up to a tick after its quiet period.
"""

from __future__ import annotations

import pytest
from test_reliability_support import Clock, agent, copy, make_series

TICK = 0.2


@pytest.fixture
def waits(monkeypatch):
    """The timeouts each pass's event wait was given (the wait itself is skipped: the clock is the test's)."""
    seen: list[float] = []

    def drain(self, timeout: float) -> None:
        seen.append(timeout)
        real(self, 0.0)

    from mediqa.agent.loop.intake import IntakeJob
    real = IntakeJob._drain
    monkeypatch.setattr(IntakeJob, "_drain", drain)
    return seen


def _idle_agent(tmp_path, stable_s=0.0, **extra):
    export, clock = tmp_path / "export", Clock()
    export.mkdir()
    a = agent(tmp_path / "state", export, clock, [], stable_s=stable_s, **extra)
    a.step(wait_s=TICK)
    clock.now += 20.0  # past the start's own quiet period
    a.step(wait_s=TICK)
    return a, export, clock


def test_an_idle_pass_waits_a_whole_tick(tmp_path, waits):
    a, _, _ = _idle_agent(tmp_path)
    waits.clear()
    a.step(wait_s=TICK)
    assert waits == [TICK]


def test_a_pass_waits_only_until_a_settling_file_s_window_ends(tmp_path, waits):
    a, export, clock = _idle_agent(tmp_path, stable_s=0.5)
    files = make_series(tmp_path, "a", 2)
    copy(files[:1], export / "a")
    a.reconcile()  # found by a walk: no close event, so it waits its window
    clock.now += 0.45
    waits.clear()
    a.step(wait_s=TICK)
    assert len(waits) == 1 and 0.05 <= waits[0] < 0.07  # the window's end (and a hair), not the tick


def test_a_pass_waits_only_until_the_next_series_goes_quiet(tmp_path, waits):
    a, export, clock = _idle_agent(tmp_path, completion={"score_ahead_s": 0.0})  # quiet period 1 s
    files = make_series(tmp_path, "a", 2)
    copy(files, export / "a")
    a.reconcile()
    a.step(wait_s=TICK)  # indexed: open, quiet 1 s after its newest file was written
    clock.now += 0.9
    deadline = a.tracker.next_deadline()
    assert deadline is not None and 0.0 < deadline < TICK
    waits.clear()
    a.step(wait_s=TICK)
    assert len(waits) == 1 and abs(waits[0] - deadline) < 0.01  # its quiet period's end, not the tick


def test_a_series_past_its_quiet_period_but_held_does_not_make_the_loop_spin(tmp_path, waits):
    a, export, clock = _idle_agent(tmp_path, stable_s=5.0, completion={"score_ahead_s": 0.0})
    files = make_series(tmp_path, "a", 3)
    copy(files[:2], export / "a")
    a.reconcile()
    clock.now += 6.0
    a.step(wait_s=TICK)  # the two files indexed: the series is open
    copy(files[2:], export / "a")
    a.reconcile()  # a third file settling in its folder holds the series
    clock.now += 2.0  # past the 1 s quiet period, but held by the file still inside its window
    waits.clear()
    results = a.step(wait_s=TICK)
    assert results == [] and a.tracker.next_deadline() == 0.0  # quiet, not scored: held
    assert waits == [TICK]  # the file's window ends in 3 s: a whole tick, never 0 (a spin)
