"""The daemon's own invariants on generated series (no ../shared data needed).

Generated twins of the shared-data tests in test_service.py (restart, supersede, half-written
files), plus volume ordering: phantom CT series written with ``write_phantom_ct``, the classical
scorer, and an injected clock, so nothing sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.volume import plan_series
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent

SIZE = 96  # the smallest phantom the classical scorer can measure (64 px leaves too little tissue)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _config(state: Path, stable_s: float = 0.0):
    return config_from_dict({"state_dir": str(state), "completion": {"quiet_period_s": {"default": 1.0}},
                             "watch": {"file_stable_s": stable_s, "reconcile_interval_s": 3600.0},
                             "scoring": {"scorer": "classical"}})


@pytest.fixture
def phantoms(tmp_path) -> dict[str, list[Path]]:
    """Two generated CT series outside the export folder: 'a' (5 slices) and 'b' (4), files in position order."""
    out = {}
    for name, slices, seed in (("a", 5, 0), ("b", 4, 1)):
        src = tmp_path / "src" / name
        write_phantom_ct(src, noise_hu=5.0, seed=seed, slices=slices, size=SIZE)
        out[name] = sorted(src.iterdir())
    return out


def _copy(files: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, dest / f.name)


def _jsonl(state: Path) -> list[dict]:
    path = state / "results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _agent(state: Path, export: Path, clock: Clock, results: list | None = None, stable_s: float = 0.0) -> Agent:
    on_result = (lambda r, i: results.append(r)) if results is not None else None
    return Agent(_config(state, stable_s), ClassicalScorer(), export, clock=clock, on_result=on_result)


# --- restart safety ---------------------------------------------------------------------------------


def test_restart_neither_loses_nor_duplicates_a_result(tmp_path, phantoms):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    _copy(phantoms["a"], export / "a")
    _agent(state, export, clock).step()  # indexed, not yet complete: the agent "crashes" here
    _copy(phantoms["b"], export / "b")  # arrives while the agent is down
    clock.now += 2
    results: list = []
    second = _agent(state, export, clock, results)
    second.step()
    clock.now += 2
    second.step()
    assert sorted(r.n_instances for r in results) == [4, 5]
    third = _agent(state, export, clock, results)  # a clean restart: nothing to do again
    clock.now += 5
    third.step()
    third.reconcile()
    third.step()
    assert len(results) == 2
    assert len(third.store.live()) == 2 and len(third.store.history()) == 2
    assert sorted(x["instances"] for x in _jsonl(state)) == [4, 5]


def test_crash_while_scoring_scores_again_once(tmp_path, phantoms, monkeypatch):
    import mediqa.agent.service as service

    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    _copy(phantoms["a"], export / "a")
    first = _agent(state, export, clock)
    first.step()
    clock.now += 2

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies mid-scoring: the series is complete, not scored

    monkeypatch.setattr(service, "analyse_series", killed)
    with pytest.raises(KeyboardInterrupt):
        first.step()
    monkeypatch.undo()
    assert [s.state for s in first.tracker.all_states()] == ["complete"]
    results: list = []
    second = _agent(state, export, clock, results)
    second.step()
    second.step()
    assert [r.n_instances for r in results] == [5]
    assert len(second.store.history()) == 1 and len(_jsonl(state)) == 1


def test_crash_between_database_and_jsonl_restores_the_line_once(tmp_path, phantoms):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    _copy(phantoms["a"], export / "a")
    _copy(phantoms["b"], export / "b")
    agent = _agent(state, export, clock)
    agent.step()
    clock.now += 2
    assert len(agent.step()) == 2
    lines = (state / "results.jsonl").read_text().splitlines(keepends=True)
    (state / "results.jsonl").write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # last line torn
    again = _agent(state, export, clock)
    ids = [x["result_id"] for x in _jsonl_lenient(state)]
    assert sorted(ids) == sorted(r["result_id"] for r in again.store.history())
    _agent(state, export, clock)
    assert len(_jsonl_lenient(state)) == 2


def _jsonl_lenient(state: Path) -> list[dict]:
    out = []
    for line in (state / "results.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # the torn line stays; it is no result
    return out


# --- supersede --------------------------------------------------------------------------------------


def test_late_instance_reopens_and_supersedes(tmp_path, phantoms):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    *early, late = phantoms["a"]
    _copy(early, export / "a")
    results: list = []
    agent = _agent(state, export, clock, results)
    agent.step()
    clock.now += 2
    (first,) = agent.step()
    assert first.n_instances == 4
    _copy([late], export / "a")
    agent.reconcile()
    agent.step()
    assert [s.state for s in agent.tracker.all_states()] == ["reopened"]
    clock.now += 2
    (second,) = agent.step()
    assert second.n_instances == 5
    (live,) = agent.store.live()
    assert live["instances"] == 5
    history = agent.store.history()
    assert [(h["instances"], h["live"]) for h in history] == [(4, False), (5, True)]
    conn = sqlite3.connect(str(state / "state.sqlite"))
    try:
        assert conn.execute("SELECT superseded_by FROM results WHERE id=?", (history[0]["result_id"],)
                            ).fetchone() == (history[1]["result_id"],)
    finally:
        conn.close()
    assert [x["instances"] for x in _jsonl(state)] == [4, 5]


# --- half-written files -----------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [200, 0.5], ids=["inside-header", "inside-pixels"])
def test_file_written_in_two_parts_is_indexed_only_when_complete(tmp_path, phantoms, cut):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    data = phantoms["b"][0].read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    target = export / "0000.dcm"
    target.write_bytes(data[:n])
    agent = _agent(state, export, clock)
    for _ in range(3):  # however often it is looked at, half a file is never an instance
        agent.step()
        clock.now += 0.5
        assert agent.tracker.all_states() == [] and str(target) in agent.settler
    with open(target, "ab") as fh:
        fh.write(data[n:])
    agent.step()
    clock.now += 0.5
    agent.step()
    (st,) = agent.tracker.all_states()
    assert st.instances == 1 and not agent.settler and agent.skipped == {}


def test_second_part_inside_the_quiet_window_is_not_even_parsed_early(tmp_path, phantoms, monkeypatch):
    import mediqa.agent.service as service

    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    data = phantoms["b"][0].read_bytes()
    target = export / "0000.dcm"
    target.write_bytes(data[: len(data) // 2])
    parsed: list[str] = []
    real = service.read_header
    monkeypatch.setattr(service, "read_header", lambda p, **kw: parsed.append(p) or real(p, **kw))
    agent = _agent(state, export, clock, stable_s=2.0)
    agent.step()
    clock.now += 1.0
    with open(target, "ab") as fh:  # the writer finishes inside the window
        fh.write(data[len(data) // 2:])
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 1_000_000))
    agent.step()
    assert parsed == []
    clock.now += 1.0  # the first window ends: the stat sees the change and starts a new one
    agent.step()
    assert parsed == [] and agent.tracker.all_states() == []
    clock.now += 2.0
    agent.step()
    assert parsed == [str(target)]
    assert [s.instances for s in agent.tracker.all_states()] == [1]


# --- volume ordering --------------------------------------------------------------------------------


def test_files_named_in_reverse_still_give_slices_in_position_order(tmp_path, phantoms):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    files = phantoms["a"]  # position z = 5 mm * k for file k
    (export / "a").mkdir(parents=True)
    for k, f in enumerate(files):
        shutil.copyfile(f, export / "a" / f"IM{len(files) - 1 - k:04d}")  # the highest slice gets the first name
    results: list = []
    agent = _agent(state, export, clock, results)
    agent.step()
    clock.now += 2
    agent.step()
    (result,) = results
    records = agent.tracker.records(result.series_uid)
    arrival = [os.path.basename(r.path) for r in records]
    assert arrival == sorted(arrival)  # indexed in name order, i.e. from the top slice down
    layout = plan_series(records)
    positions = [s.position for s in layout.slices]
    assert layout.ordered_by == "position" and layout.n_slices == 5
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert [os.path.basename(s.path) for s in layout.slices] == [f"IM{4 - k:04d}" for k in range(5)]
    assert result.worst is not None
    assert result.worst.position_mm == pytest.approx(positions[result.worst.index])
    assert result.worst.rank == result.worst.index + 1


def test_files_inside_their_quiet_window_are_not_stat_again(tmp_path, phantoms, monkeypatch):
    import mediqa.agent.service as service

    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    _copy(phantoms["a"], export / "a")
    agent = _agent(state, export, clock, stable_s=5.0)
    agent.reconcile()
    assert len(agent.settler) == 5
    calls: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(service.os, "stat", lambda p, *a, **k: calls.append(p) or real_stat(p, *a, **k))
    for _ in range(4):
        clock.now += 1.0
        agent.step()
    assert calls == [] and len(agent.settler) == 5
    clock.now += 1.0
    agent.step()
    assert set(calls) == {str(export / "a" / f.name) for f in phantoms["a"]} and not agent.settler
    assert [s.instances for s in agent.tracker.all_states()] == [5]
