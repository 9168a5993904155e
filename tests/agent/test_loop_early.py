"""The model pass before a counted series' last file (loop/early.py), with the embedded model: the likely
chosen slices are passed while the series arrives, completion then passes fewer, and the result is the one
an agent without early passes gives. A failing or crashing early pass costs nothing but the pass."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_reliability_support import Clock, config, copy, make_series, series_uid

from mediqa.agent.scoring.learned import LearnedScorer
from mediqa.agent.service import Agent

N = 40  # slices, announced in ImagesInAcquisition


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory):
    cfg = config(tmp_path_factory.mktemp("model-state"), scoring={"scorer": "learned"})
    loaded = LearnedScorer.from_config(cfg)
    yield loaded
    loaded.close()


@pytest.fixture
def counted(tmp_path: Path) -> list[Path]:
    files = make_series(tmp_path, "counted", N, seed=4)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.ImagesInAcquisition = N
        ds.save_as(f)
    return files


def _agent(tmp_path: Path, name: str, scorer: LearnedScorer, results: list, **completion) -> tuple[Agent, Clock]:
    clock = Clock()
    # Scoring ahead off: it passes a series silent for a second (the test's clock), and shares the scorer's store.
    cfg = config(tmp_path / name / "state", scoring={"scorer": "learned"},
                 completion={"pass_ahead_on_count": True, "score_ahead_s": 0.0, **completion})
    agent = Agent(cfg, scorer, tmp_path / name / "export", clock=clock, on_result=lambda r, i: results.append(r))
    (tmp_path / name / "export").mkdir(parents=True)
    return agent, clock


def _arrive(agent: Agent, clock: Clock, files: list[Path], dest: Path, start: int, stop: int) -> None:
    """Files ``start``..``stop`` land one by one, half a second apart (a console's pace)."""
    for f in files[start:stop]:
        copy([f], dest)
        agent.reconcile()
        agent.step()
        clock.now += 0.5


@pytest.mark.slow
def test_a_counted_series_is_passed_while_it_arrives_and_scored_as_without(tmp_path, scorer, counted):
    scorer.outputs.clear()
    results: list = []
    agent, clock = _agent(tmp_path, "early", scorer, results)
    _arrive(agent, clock, counted, tmp_path / "early" / "export" / "s", 0, 34)  # 85 %: the first fraction passed
    agent._reap_early(wait=True)
    early = scorer.outputs.passed_slices
    assert early >= 7 and not results
    _arrive(agent, clock, counted, tmp_path / "early" / "export" / "s", 34, N)
    for _ in range(3):
        agent.step()
    agent._reap_early(wait=True)
    (result,) = results
    at_completion = scorer.outputs.passed_slices - early
    assert at_completion < len(result.selection.indices)  # chosen slices passed early were not passed again

    scorer.outputs.clear()
    plain: list = []
    other, clock2 = _agent(tmp_path, "plain", scorer, plain, pass_ahead_on_count=False)
    _arrive(other, clock2, counted, tmp_path / "plain" / "export" / "s", 0, N)
    for _ in range(3):
        other.step()
    (expected,) = plain
    assert scorer.outputs.passed_slices == len(expected.selection.indices)  # off: one pass, at completion
    assert result.selection.indices == expected.selection.indices and result.decision == expected.decision
    np.testing.assert_allclose(result.slice_scores, expected.slice_scores, rtol=0, atol=1e-5)
    assert result.score == pytest.approx(expected.score, abs=1e-5)


@pytest.mark.slow
def test_an_early_pass_counts_as_an_attempt_while_it_runs_and_a_failing_one_costs_only_itself(
        tmp_path, scorer, counted, monkeypatch, caplog):
    scorer.outputs.clear()
    results: list = []
    agent, clock = _agent(tmp_path, "fails", scorer, results)
    entered, release = threading.Event(), threading.Event()

    def failing(inputs):
        entered.set()
        release.wait(30)
        raise RuntimeError("the model pass failed")

    monkeypatch.setattr(scorer, "prime", failing)
    _arrive(agent, clock, counted, tmp_path / "fails" / "export" / "s", 0, 33)
    assert entered.wait(30)
    uid = series_uid(counted[0])
    assert agent.tracker.state(uid).attempts == 1  # a crash now would count, as at completion
    release.set()
    with caplog.at_level(logging.WARNING):
        agent._reap_early(wait=True)
    assert agent.tracker.state(uid).attempts == 0
    assert any("early model pass failed (RuntimeError)" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    _arrive(agent, clock, counted, tmp_path / "fails" / "export" / "s", 33, N)
    for _ in range(3):
        agent.step()
    assert [r.decision for r in results] and results[0].n_instances == N


@pytest.mark.slow
def test_a_series_that_once_stopped_the_agent_is_not_passed_early(tmp_path, scorer, counted):
    scorer.outputs.clear()
    results: list = []
    agent, clock = _agent(tmp_path, "crashed", scorer, results)
    _arrive(agent, clock, counted, tmp_path / "crashed" / "export" / "s", 0, 10)
    uid = series_uid(counted[0])
    agent.tracker.begin_attempt(uid)  # as a scoring that killed the process leaves it
    _arrive(agent, clock, counted, tmp_path / "crashed" / "export" / "s", 10, 36)
    agent._reap_early(wait=True)
    assert scorer.outputs.passed_slices == 0
