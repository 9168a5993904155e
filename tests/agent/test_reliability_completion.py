"""Never wrong-and-live: a series is scored on all of its files, once, and a file whose content changes
after it was read makes its series score again (the new result supersedes the old one)."""

from __future__ import annotations

import os
import time

import pytest
from test_reliability_support import Clock, agent, config, copy, jsonl, make_series, noisy_rewrite, settle

from mediqa.agent.dicom.index import read_header
from mediqa.agent.pipeline import analyse_series
from mediqa.agent.scoring.classical import ClassicalScorer

# --- 4. no partial scoring after a restart ------------------------------------------------------------


@pytest.mark.slow
def test_a_restart_with_a_backlog_scores_the_series_once_on_all_its_slices(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    files = make_series(tmp_path, "a", 35)
    copy(files[:9], export / "a")
    agent(state, export, clock).step()  # 9 indexed, then the agent stops
    copy(files[9:], export / "a")  # the rest arrives while it is down
    clock.now += 30
    results: list = []
    second = agent(state, export, clock, results, stable_s=0.5)
    for _ in range(12):
        second.step()
        clock.now += 0.4
    assert [r.n_instances for r in results] == [35]
    assert [x["instances"] for x in jsonl(state)] == [35]


def test_an_open_series_gets_a_fresh_quiet_period_after_a_restart(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    files = make_series(tmp_path, "a", 10)
    copy(files[:5], export / "a")
    agent(state, export, clock).step()
    clock.now += 30  # the agent was down a while; the writer was between two files
    results: list = []
    second = agent(state, export, clock, results)
    second.step()
    assert results == []  # its last arrival is old, but the agent cannot know what it missed
    clock.now += 0.5
    copy(files[5:], export / "a")
    second.reconcile()
    settle(second, clock)
    assert [r.n_instances for r in results] == [10]


# --- 6. preallocated and rewritten files ----------------------------------------------------------------


def _reference_score(tmp_path, paths: list[str]) -> float:
    records = [read_header(p) for p in paths]
    return analyse_series(records, ClassicalScorer(), config(tmp_path / "ref")).result.score


def test_a_preallocated_file_is_not_scored_half_written(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    files = make_series(tmp_path, "a", 5, noise_hu=20.0)  # mid-scale scores: half a slice of zeros shows
    paths = copy(files[:4], export / "a")
    data = files[4].read_bytes()
    last = str(export / "a" / files[4].name)
    header = len(data) - 96 * 96 * 2
    with open(last, "wb") as fh:  # full size first, the header, pixels still zero (CopyFile, SMB clients)
        fh.write(data[:header] + bytes(len(data) - header))

    def arrive(upto: int) -> None:  # more of the content, with a new mtime
        with open(last, "r+b") as fh:
            fh.seek(header)
            fh.write(data[header:upto])
        os.utime(last, ns=(time.time_ns(), os.stat(last).st_mtime_ns + 1_000_000))

    results: list = []
    a = agent(state, export, clock, results)
    a.step()  # all five indexed, the last one with empty pixels
    clock.now += 2
    arrive(header + (len(data) - header) // 2)  # half the pixels, just as the series would be complete
    a.step()
    clock.now += 0.5
    arrive(len(data))  # the rest
    a.reconcile()  # the periodic rescan sees the new mtime
    settle(a, clock)
    (result,) = results
    assert result.score == _reference_score(tmp_path, [*paths, last])
    (live,) = a.store.live()
    assert live["uuid"] == jsonl(state)[-1]["uuid"]


def test_a_file_rewritten_after_scoring_reopens_its_series_and_the_new_result_supersedes(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    paths = copy(make_series(tmp_path, "a", 5), export / "a")
    results: list = []
    a = agent(state, export, clock, results)
    settle(a, clock)
    assert [r.decision for r in results] == ["ok"]
    for k, p in enumerate(paths):  # rewritten in place: same UIDs, same size, much noisier pixels
        noisy_rewrite(p, sigma=80.0, seed=k)
    a.reconcile()
    settle(a, clock)
    assert [r.decision for r in results] == ["ok", "retake"]
    (live,) = a.store.live()
    first, second = jsonl(state)
    assert live["decision"] == "retake" and second["supersedes"] == first["uuid"]


def test_a_touched_file_with_the_same_content_does_not_reopen_its_series(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    paths = copy(make_series(tmp_path, "a", 5), export / "a")
    results: list = []
    a = agent(state, export, clock, results)
    settle(a, clock)
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))
    a.reconcile()
    settle(a, clock)
    assert len(results) == 1 and len(jsonl(state)) == 1
    assert a.tracker.file_known(paths[1], st.st_size, st.st_mtime_ns + 5_000_000)
