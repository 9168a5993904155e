"""Bounded work per pass: a series' latency does not depend on other series' backlog.

Behaviour only (no timing): a pass indexes a bounded batch and then scores what is due; the first walk
after a start is done in slices while indexing goes on, folder by folder; a series' quiet period counts
from when its newest file was written, not from when the loop got round to indexing it; saliency at
completion decodes a bounded number of slices however long the series.
"""

from __future__ import annotations

import pydicom
import pytest
from test_reliability_support import Clock, agent, copy, make_series, series_uid

import mediqa.agent.loop.intake as intake
import mediqa.agent.loop.saliency as loop_saliency
from mediqa.agent.dicom import decode
from mediqa.agent.select.saliency import CANDIDATES_MAX


@pytest.mark.slow
def test_a_pass_indexes_at_most_n_files_and_scores_a_due_series_before_the_backlog_is_done(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "INDEX_MIN_FILES", 6)
    monkeypatch.setattr(intake, "INDEX_MAX_FILES", 6)
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 5, seed=1), export / "a")
    backlog = copy(make_series(tmp_path, "b", 30, seed=2), export / "b")
    results: list = []
    a = agent(state, export, clock, results)
    a.step()  # the walk finds all 35 files; 6 are indexed: "a" (found first) and one of "b"
    assert a.stats.files_indexed == 6 and len(a.settler) == 29
    clock.now += 2  # "a" has been quiet for its quiet period; "b" is far from indexed
    for _ in range(2):
        before = a.stats.files_indexed
        a.step()
        assert a.stats.files_indexed - before <= 6
    assert [r.n_instances for r in results] == [5]  # scored while "b" is still being indexed
    assert a.settler and a.tracker.state(series_uid(backlog[0])).state == "open"
    for _ in range(8):
        a.step()
        clock.now += 2
    assert sorted(r.n_instances for r in results) == [5, 30]


@pytest.mark.slow
def test_the_first_walk_is_sliced_and_nothing_is_due_before_it_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "WALK_MIN_FILES", 1)
    monkeypatch.setattr(intake, "WALK_SLICE_S", 0.0)
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4, seed=1), export / "a")
    copy(make_series(tmp_path, "b", 200, seed=2), export / "b")  # the walk checks its time every 64 files
    results: list = []
    a = agent(state, export, clock, results)
    a.step()  # a slice of the walk: "a" and part of "b" found, "a" indexed
    assert a._walk is not None and not a._scan_done
    assert a.tracker.state(series_uid(export / "a" / "0000.dcm")) is not None
    clock.now += 2
    a.step()  # "a" is quiet but the walk has not seen the whole backlog: nothing is due yet
    assert results == [] and not a._scan_done
    for _ in range(6):
        a.step()
    assert a._scan_done and a._walk is None
    clock.now += 2
    a.step()
    assert results and results[0].n_instances == 4


def test_the_quiet_period_counts_from_the_newest_file_written_not_from_its_indexing(tmp_path, monkeypatch):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    results: list = []
    a = agent(state, export, clock, results)
    a.step()
    clock.now += 10  # the agent has run a while
    copy(make_series(tmp_path, "a", 4), export / "a")
    real = intake.wall_clock
    monkeypatch.setattr(intake, "wall_clock", lambda: real() + 30.0)  # the files were written 30 s ago
    a.reconcile()
    a.step()  # indexed only now (a burst kept the loop busy): quiet since they were written, so due
    a.step()
    assert [r.n_instances for r in results] == [4]


def test_the_quiet_period_still_counts_from_the_start_for_files_older_than_the_agent(tmp_path, monkeypatch):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock(100.0)
    copy(make_series(tmp_path, "a", 4), export / "a")
    real = intake.wall_clock
    monkeypatch.setattr(intake, "wall_clock", lambda: real() + 3600.0)  # written before the agent started
    results: list = []
    a = agent(state, export, clock, results)
    a.step()
    a.step()
    assert results == []  # what else arrived while the agent was stopped is unknown: one quiet period
    clock.now += 1.5
    a.step()
    assert [r.n_instances for r in results] == [4]


@pytest.mark.slow
def test_saliency_at_completion_decodes_at_most_k_slices(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_saliency, "SALIENCY_BUSY_S", 0.0)  # nothing computed as files arrive
    monkeypatch.setattr(loop_saliency, "SALIENCY_IDLE_S", 0.0)
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", CANDIDATES_MAX + 36), export / "a")
    results: list = []
    a = agent(state, export, clock, results)
    a.step()
    assert a.stats.files_indexed == CANDIDATES_MAX + 36
    decoded: list[str] = []
    real, real_pixels = pydicom.dcmread, decode._pixels  # the chosen slices' read, and saliency's (no pydicom)
    monkeypatch.setattr(decode.pydicom, "dcmread", lambda path, *x, **k: decoded.append(path) or real(path, *x, **k))
    monkeypatch.setattr(decode, "_pixels", lambda record: decoded.append(record.path) or real_pixels(record))
    clock.now += 2
    a.step()
    (result,) = results
    assert result.n_slices == CANDIDATES_MAX + 36 and len(result.slice_scores) == 7
    assert len(decoded) <= CANDIDATES_MAX + 7  # saliency of the candidates, then the 7 chosen slices


def test_a_rescan_of_an_indexed_export_reads_its_rows_per_folder_not_per_file(tmp_path):
    """The periodic rescan (every watch.reconcile_interval_s) is what an idle agent does: on a big export one
    query per file was most of its CPU. A changed file is still found."""
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 6, seed=1), export / "a")
    files = copy(make_series(tmp_path, "b", 6, seed=2), export / "b")
    results: list = []
    a = agent(state, export, clock, results)
    for _ in range(3):
        a.step()
        clock.now += 20.0
    assert a.tracker.db.query_one("SELECT COUNT(*) FROM files WHERE status='indexed'") == (12,)
    lookups: list[str] = []
    one = a.tracker.file_row
    a.tracker.file_row = lambda path: lookups.append(path) or one(path)  # type: ignore[method-assign]
    assert a.reconcile() == 0
    assert lookups == []
    with open(files[0], "ab") as f:  # a rewritten file (events lost): its size changed
        f.write(b"\0" * 16)
    assert a.reconcile() == 1
