"""Big batches are read in worker processes, with the same outcomes as in the loop; a worker that dies makes
the batch read in the loop."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from test_reliability_support import Clock, agent, copy, make_series, settle

import mediqa.agent.loop.intake as intake
import mediqa.agent.loop.reading as reading


@pytest.fixture
def small_batches_go_to_workers(monkeypatch):
    monkeypatch.setattr(intake, "POOL_MIN_READY", 8)
    monkeypatch.setattr(intake, "POOL_WARM_MIN", 8)


def _warm(a) -> list[int]:
    """Start the agent's workers and wait until they are up; returns the sizes of the batches they read."""
    deadline = time.monotonic() + 60
    while not a._pool.ready():
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    batches: list[int] = []
    real = a._pool.submit
    a._pool.submit = lambda ready, ingest: batches.append(len(ready)) or real(ready, ingest)
    return batches


def _indexed(a) -> dict[str, tuple]:
    rows = a.db.query("SELECT path, status, reason, crc FROM files ORDER BY path")
    return {bytes(p).decode(): (status, reason, crc) for p, status, reason, crc in rows}


@pytest.mark.slow
def test_workers_read_a_big_batch_as_the_loop_would(tmp_path, small_batches_go_to_workers, monkeypatch):
    export, clock = tmp_path / "export", Clock()
    copy(make_series(tmp_path, "a", 9, seed=1), export / "a")
    (export / "a" / "notes.txt").write_text("not dicom")
    (export / "empty.dcm").write_bytes(b"")  # retried (maybe still being written): beside the series
    results: list = []
    pooled = agent(tmp_path / "pooled", export, clock, results)
    try:
        batches = _warm(pooled)
        settle(pooled, clock)
        assert batches == [11]  # the batch of 11 went to the workers
        by_pool = _indexed(pooled)
    finally:
        pooled.close()
    monkeypatch.setattr(intake, "POOL_MIN_READY", 10**9)
    here: list = []
    local = agent(tmp_path / "local", export, Clock(), here)
    try:
        settle(local, local.clock)  # type: ignore[arg-type]
        assert local._pool._executor is None
        assert _indexed(local) == by_pool
    finally:
        local.close()
    assert [r.n_instances for r in results] == [r.n_instances for r in here] == [9]
    assert results[0].score == here[0].score
    assert pooled.skipped == local.skipped and set(pooled.skipped.values()) == {"not_dicom"}


@pytest.mark.slow
def test_a_worker_that_dies_makes_the_batch_read_in_the_loop(tmp_path, small_batches_go_to_workers, caplog):
    export, clock = tmp_path / "export", Clock()
    copy(make_series(tmp_path, "a", 9, seed=1), export / "a")
    results: list = []
    a = agent(tmp_path / "state", export, clock, results)
    try:
        batches = _warm(a)
        a.step()
        assert batches == [9]
        executor = a._pool._executor
        assert executor is not None
        for process in list(executor._processes.values()):  # as if a decoder had crashed them
            process.kill()
            process.join(5)
        copy(make_series(tmp_path, "b", 9, seed=2), export / "b")
        caplog.set_level(logging.WARNING)
        a.reconcile()
        settle(a, clock)
    finally:
        a.close()
    assert sorted(r.n_instances for r in results) == [9, 9]
    assert "reading in the agent's process" in caplog.text


def test_warm_workers_are_started_with_nothing_to_read_and_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "POOL_IDLE_S", 0.0)
    export, clock = tmp_path / "export", Clock()
    export.mkdir()
    cold = agent(tmp_path / "cold", export, clock, [])
    try:
        cold.step()
        assert cold._pool._executor is None  # started only for a big batch
    finally:
        cold.close()
    warm = agent(tmp_path / "warm", export, clock, [], ingest={"read_workers_warm": True})
    try:
        warm.step()
        assert warm._pool._executor is not None
        warm._release_memory()
        warm.step()
        assert warm._pool._executor is not None  # neither idleness nor a memory release stops them
        _warm(warm)  # up before the close: a spawn still importing (a busy machine) outlives the thread check
    finally:
        warm.close()


@pytest.mark.parametrize("in_flight", [0, 7])
def test_the_scorer_is_told_when_the_reading_workers_hold_the_cores(tmp_path, in_flight):
    """A series scored while files are in the workers runs ONNX Runtime on one thread (two fight them)."""
    export, clock = tmp_path / "export", Clock()
    copy(make_series(tmp_path, "a", 4, seed=1), export / "a")
    results: list = []
    a = agent(tmp_path / "state", export, clock, results)
    told: list[bool] = []
    a.scorer.set_contended = told.append  # type: ignore[attr-defined]
    a._pool.in_flight = lambda: in_flight  # type: ignore[method-assign]
    try:
        settle(a, clock)
    finally:
        a.close()
    assert len(results) == 1 and told == [in_flight > 0]


KILLED_AGENT = r"""
import os, signal, sys, time
from mediqa.agent.loop.reading import ReadPool
pool = ReadPool(2)
deadline = time.monotonic() + 60
while not pool.ready():
    assert time.monotonic() < deadline
    time.sleep(0.05)
with open(sys.argv[1], "w") as fh:
    fh.write(" ".join(str(p) for p in pool._executor._processes))
os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or `kill -9` would
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_reading_workers_die_with_an_agent_killed_outright(tmp_path):
    pid_file, err = tmp_path / "pids", tmp_path / "stderr"
    with err.open("wb") as stderr:  # files, not pipes: an orphan holding a pipe open would hang the test
        code = subprocess.run([sys.executable, "-c", KILLED_AGENT, str(pid_file)], stdout=subprocess.DEVNULL,
                              stderr=stderr, timeout=120, check=False).returncode
    pids = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
    assert code == -signal.SIGKILL and len(pids) == 2, err.read_text()[-2000:]
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.1)
    for pid in alive:  # do not leave them behind whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert alive == [], "reading workers outlived the agent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_pass_hands_warm_workers_enough_to_stay_busy(tmp_path, small_batches_go_to_workers, monkeypatch):
    """A pass may score for a second or more: with the workers up it hands them up to POOL_AHEAD files, not
    only the INDEX_MAX_FILES it would read itself (512 left them idle half of a backlog)."""
    monkeypatch.setattr(intake, "INDEX_MAX_FILES", 4)
    monkeypatch.setattr(intake, "POOL_AHEAD", 16)
    export, clock = tmp_path / "export", Clock()
    copy(make_series(tmp_path, "a", 20, seed=1), export / "a")
    results: list = []
    a = agent(tmp_path / "state", export, clock, results)
    try:
        batches = _warm(a)
        for _ in range(20):
            if batches:
                break
            a.step()
            clock.now += 0.5
        assert batches and batches[0] == 16
        settle(a, clock)
        assert [r.n_instances for r in results] == [20]
    finally:
        a.close()


@pytest.mark.slow
def test_the_scorer_makes_its_spare_when_the_workers_take_a_batch_and_drops_it_when_they_stop(
        tmp_path, small_batches_go_to_workers, monkeypatch):
    """The one-thread session takes about a second to make: made when the workers take files, it is ready
    when a series is scored while they work, not made on that series' time. It lives as long as they do."""
    export, clock = tmp_path / "export", Clock()
    copy(make_series(tmp_path, "a", 9, seed=1), export / "a")
    a = agent(tmp_path / "state", export, clock, [])
    calls: list[str] = []
    a.scorer.prepare_spare = lambda: calls.append("prepare")  # type: ignore[attr-defined]
    a.scorer.release_spare = lambda: calls.append("release")  # type: ignore[attr-defined]
    try:
        batches = _warm(a)
        settle(a, clock)
        assert batches == [9] and calls[:1] == ["prepare"]
        assert "release" not in calls  # the workers are still up
        monkeypatch.setattr(reading, "POOL_IDLE_S", 0.0)
        a.step()
        assert a._pool._executor is None and calls[-1] == "release"
    finally:
        a.close()
