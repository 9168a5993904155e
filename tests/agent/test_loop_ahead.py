"""Scoring ahead (``completion.score_ahead_s``): a series silent for a moment is scored while the loop has
nothing else to do, and that result is the one shown when its quiet period ends, but only when its files
are exactly those it was computed from. The result is never shown early, never stale, and a crash while
scoring ahead counts as a scoring attempt like any other."""

from __future__ import annotations

import sqlite3

import pytest
from test_reliability_support import Clock, agent, copy, make_series, noisy_rewrite, series_uid

from mediqa.agent import service
from mediqa.agent.loop import ahead
from mediqa.errors import ConfigError

QUIET = {"quiet_period_s": {"default": 10.0}}


@pytest.fixture
def analysed(monkeypatch):
    """The series uids the pipeline ran on, in order."""
    calls: list[str] = []
    real = service.analyse_series

    def counting(records, *a, **kw):
        calls.append(records[0].series_uid)
        return real(records, *a, **kw)

    monkeypatch.setattr(service, "analyse_series", counting)
    return calls


def _start(tmp_path, results, **completion):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    a = agent(state, export, clock, results, completion={**QUIET, **completion})
    a.step()
    clock.now += 20.0  # past the quiet period after the start
    a.step()
    return a, export, clock


def _arrive(a, clock, files, dest) -> list[str]:
    out = copy(files, dest)
    a.reconcile()
    a.step()
    return out


def test_a_quiet_series_is_scored_ahead_and_that_result_shown_when_its_quiet_period_ends(tmp_path, analysed):
    results: list = []
    a, export, clock = _start(tmp_path, results)
    files = make_series(tmp_path, "a", 8)
    _arrive(a, clock, files, export / "a")
    assert analysed == []  # just arrived: not yet
    clock.now += 1.5
    a.step()
    assert analysed == [series_uid(files[0])] and results == []  # scored ahead, not shown
    assert a.tracker.state(series_uid(files[0])).attempts == 0  # it ended: no crash to count
    clock.now += 5.0
    a.step()
    assert results == []  # still inside its quiet period: never shown early
    clock.now += 4.0
    a.step()
    assert [r.n_instances for r in results] == [8]
    assert len(analysed) == 1  # the result computed ahead, not a second pass
    assert a.tracker.state(series_uid(files[0])).attempts == 0


def test_a_file_arriving_after_scoring_ahead_makes_it_score_again(tmp_path, analysed):
    results: list = []
    a, export, clock = _start(tmp_path, results)
    files = make_series(tmp_path, "a", 9)
    _arrive(a, clock, files[:8], export / "a")
    clock.now += 1.5
    a.step()
    assert len(analysed) == 1
    _arrive(a, clock, files[8:], export / "a")
    clock.now += 10.5
    a.step()
    assert [r.n_instances for r in results] == [9]
    assert len(analysed) == 2


def test_a_file_rewritten_after_scoring_ahead_is_read_again_and_scored_again(tmp_path, analysed, monkeypatch):
    monkeypatch.setattr(ahead, "AHEAD_TRIES", 1)  # not scored ahead again: the digest alone must catch it
    results: list = []
    a, export, clock = _start(tmp_path, results)
    files = make_series(tmp_path, "a", 8)
    written = _arrive(a, clock, files, export / "a")
    clock.now += 1.5
    a.step()
    assert len(analysed) == 1
    ahead_score = next(iter(a._ahead.values())).result.score
    noisy_rewrite(written[3], sigma=400.0, seed=1)  # same size, new pixels: no file event (reconcile is off)
    clock.now += 9.0
    for _ in range(30):  # found changed at completion: read again, and its quiet period begins again
        a.step()
        clock.now += 0.5
    assert len(results) == 1 and len(analysed) >= 2  # the stale result was not used
    assert results[0].score != ahead_score


def test_scoring_ahead_is_off_at_zero(tmp_path, analysed):
    results: list = []
    a, export, clock = _start(tmp_path, results, score_ahead_s=0.0)
    _arrive(a, clock, make_series(tmp_path, "a", 8), export / "a")
    clock.now += 5.0
    a.step()
    assert analysed == []
    clock.now += 5.5
    a.step()
    assert len(results) == 1 and len(analysed) == 1


def test_a_series_that_kills_the_agent_while_scored_ahead_counts_its_attempts(tmp_path, monkeypatch):
    results: list = []
    a, export, clock = _start(tmp_path, results)
    files = make_series(tmp_path, "a", 4)

    def killer(*a, **kw):
        raise KeyboardInterrupt  # stands for a crash the process does not survive

    monkeypatch.setattr(service, "analyse_series", killer)
    _arrive(a, clock, files, export / "a")
    clock.now += 1.5
    with pytest.raises(KeyboardInterrupt):
        a.step()
    assert a.tracker.state(series_uid(files[0])).attempts == 1


def test_a_negative_score_ahead_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="completion.score_ahead_s"):
        agent(tmp_path / "state", tmp_path, Clock(), completion={**QUIET, "score_ahead_s": -1.0})


def test_a_series_with_a_file_still_settling_in_its_folder_is_not_scored_ahead(tmp_path, analysed):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    results: list = []
    a = agent(state, export, clock, results, stable_s=2.0, completion=QUIET)
    a.step()
    clock.now += 20.0
    files = make_series(tmp_path, "a", 9)
    copy(files[:8], export / "a")
    a.reconcile()
    a.step()
    clock.now += 2.5
    copy(files[8:], export / "a")  # written later: still settling when the first eight are indexed
    a.reconcile()
    a.step()
    assert a.tracker.state(series_uid(files[0])).instances == 8
    clock.now += 1.5  # the eight silent for 1.5 s; the ninth still settling (stable after 2 s)
    a.step()
    assert a.tracker.state(series_uid(files[0])).instances == 8
    assert analysed == []  # held: a file of its folder is pending
    clock.now += 1.0
    a.step()
    assert a.tracker.state(series_uid(files[0])).instances == 9
    clock.now += 1.5
    a.step()
    assert len(analysed) == 1
    clock.now += 10.0
    a.step()
    assert [r.n_instances for r in results] == [9] and len(analysed) == 1


def test_a_database_error_while_scoring_ahead_is_reported_and_counts_no_attempt(tmp_path, monkeypatch):
    results: list = []
    a, export, clock = _start(tmp_path, results)
    files = make_series(tmp_path, "a", 4)

    def broken(*a, **kw):
        raise sqlite3.OperationalError("disk I/O error")  # the loop reports it; the agent lives on

    monkeypatch.setattr(service, "analyse_series", broken)
    _arrive(a, clock, files, export / "a")
    clock.now += 1.5
    a.step()
    assert a.tracker.state(series_uid(files[0])).attempts == 0  # not a crash: nothing to hold against it
    assert a.health().status == "degraded"
