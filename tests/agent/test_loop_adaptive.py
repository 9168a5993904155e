"""Completion without a count: the opt-in adaptive rule (``completion.adaptive``) ends the quiet period once
the series' own rhythm has clearly stopped; off by default; a late file re-opens and supersedes."""

from __future__ import annotations

import pytest
from test_reliability_support import Clock, agent, copy, jsonl, make_series

from mediqa.agent.loop.rhythm import MIN_FILES, PAUSE_MARGIN, Rhythm, adaptive_wait
from mediqa.errors import ConfigError

QUIET = {"quiet_period_s": {"default": 10.0}}
ADAPTIVE = {"quiet_period_s": {"default": 10.0}, "adaptive": True, "adaptive_k": 5.0, "adaptive_min_s": 1.0}


def _arrive(a, clock: Clock, files, export, gap_s: float) -> None:
    """The console writes one file every ``gap_s`` seconds; the loop indexes each as it comes."""
    for f in files:
        copy([f], export / "a")
        a.reconcile()
        a.step()
        clock.now += gap_s


def test_the_rule_needs_a_rhythm_and_stays_within_its_bounds():
    assert adaptive_wait([0.1] * (MIN_FILES - 2), 10.0, 5.0, 1.0) == 10.0  # too few files: the quiet period
    assert adaptive_wait([0.1] * 20, 10.0, 5.0, 1.0) == 1.0  # 5 x 0.1 s, but never below the minimum
    assert adaptive_wait([0.5] * 20, 10.0, 5.0, 1.0) == 2.5
    assert adaptive_wait([0.5] * 20 + [3.0], 10.0, 5.0, 1.0) == PAUSE_MARGIN * 3.0  # it paused once: longer
    assert adaptive_wait([4.0] * 20, 10.0, 5.0, 1.0) == 10.0  # never beyond the quiet period
    rhythm = Rhythm()
    for t in (0.0, 0.2, 0.1, 0.4):  # files written out of order count no negative gap
        rhythm.add(t)
    assert rhythm.files == 4 and min(rhythm.gaps) >= 0.0 and rhythm.last == 0.4


def test_off_by_default_a_series_waits_its_whole_quiet_period(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    results: list = []
    a = agent(state, export, clock, results, completion=QUIET)
    a.step()
    clock.now += 20
    _arrive(a, clock, make_series(tmp_path, "a", 10), export, 0.2)
    clock.now += 3.0
    a.step()
    assert results == []
    clock.now += 7.0
    a.step()
    assert [r.n_instances for r in results] == [10]


def test_adaptive_scores_once_the_rhythm_has_stopped(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    results: list = []
    a = agent(state, export, clock, results, completion=ADAPTIVE)
    a.step()
    clock.now += 20  # past the quiet period after the start
    _arrive(a, clock, make_series(tmp_path, "a", 10), export, 0.2)
    a.step()
    assert results == []  # 0.2 s after the last file: still inside the rhythm's wait (1 s)
    clock.now += 1.0
    a.step()
    assert [r.n_instances for r in results] == [10]  # 1.2 s after the last file, not 10 s


def test_a_file_after_an_early_completion_reopens_and_supersedes(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    results: list = []
    a = agent(state, export, clock, results, completion=ADAPTIVE)
    a.step()
    clock.now += 20
    files = make_series(tmp_path, "a", 11)
    _arrive(a, clock, files[:10], export, 0.2)
    clock.now += 2.0
    a.step()
    assert [r.n_instances for r in results] == [10]
    _arrive(a, clock, files[10:], export, 0.2)  # the console had only paused
    clock.now += 2.0
    a.step()
    assert len(results) == 1  # its rhythm misjudged once: a re-opened series waits the whole quiet period
    clock.now += 8.0
    a.step()
    assert [r.n_instances for r in results] == [10, 11]
    first, second = jsonl(state)
    assert second["supersedes"] == first["uuid"] and second["instances"] == 11


def test_adaptive_does_not_cut_the_quiet_period_after_a_start(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    results: list = []
    first = agent(state, export, clock, completion=ADAPTIVE)
    files = make_series(tmp_path, "a", 10)
    _arrive(first, clock, files[:6], export, 0.2)  # then the agent stops; the rest arrives meanwhile
    copy(files[6:], export / "a")
    clock.now += 0.2
    a = agent(state, export, clock, results, completion=ADAPTIVE)
    for _ in range(4):
        a.step()
        clock.now += 0.5
    assert results == []  # its rhythm was not seen: the whole quiet period after the start
    clock.now += 8.5
    a.step()
    assert [r.n_instances for r in results] == [10]


@pytest.mark.parametrize(("key", "value"), [("adaptive_k", 0.0), ("adaptive_min_s", -1.0)])
def test_nonsense_adaptive_settings_are_refused(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"completion.{key}"):
        agent(tmp_path / "state", tmp_path, Clock(), completion={**ADAPTIVE, key: value})
