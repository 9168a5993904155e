"""The state database may fill up, rot or vanish: the agent keeps watching, says so, loses no result and
never alerts an old series twice; results carry stable uuids and reach results.jsonl exactly once."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from test_reliability_support import Clock, agent, copy, jsonl, make_series, settle

from mediqa.agent.report.console import ConsoleReporter

RETAKE = {"retake_all": True}  # every phantom is a retake


def _small_pages(state: Path) -> None:
    """A state database with 512-byte pages: every instance record and result needs a page of its own,
    so once the page count is capped (a full disk) each of them is refused, while small updates fit."""
    state.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(state / "state.sqlite"))
    conn.execute("PRAGMA page_size=512")
    conn.execute("VACUUM")
    conn.close()


def _disk_full(a) -> None:
    (pages,) = a.db.query_one("PRAGMA page_count")
    a.db.query(f"PRAGMA max_page_count={pages}")


def _disk_freed(a) -> None:
    a.db.query("PRAGMA max_page_count=1073741823")


def _errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- 3. a full disk ------------------------------------------------------------------------------------


def test_a_full_disk_degrades_keeps_watching_and_writes_every_result_later(tmp_path, caplog):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    _small_pages(state)
    copy(make_series(tmp_path, "a", 4, seed=1), export / "a")
    shown: list = []
    a = agent(state, export, clock, shown)
    a.step()  # indexed
    assert a.health().status == "ok"
    _disk_full(a)
    caplog.set_level(logging.INFO)
    clock.now += 2
    a.step()  # scored; the result cannot be written
    assert len(shown) == 1  # shown at once all the same: never silent
    health = a.health()
    assert health.status == "degraded" and any("full" in r for r in health.reasons)
    assert jsonl(state) == []
    copy(make_series(tmp_path, "b", 5, seed=2), export / "b")  # arrives while the disk is full
    a.reconcile()
    for _ in range(20):  # many passes, one ERROR line
        clock.now += 1
        a.step()
    assert len(_errors(caplog)) == 1
    clock.now += 61
    a.step()
    assert len(_errors(caplog)) == 2  # again a minute later
    assert a.tracker.state(shown[0].series_uid).state != "scored"
    _disk_freed(a)
    settle(a, clock, passes=6, dt=6.0)
    assert a.health().status == "ok"
    assert sorted(r.n_instances for r in shown) == [4, 5]  # the first result was not shown twice
    lines = jsonl(state)
    assert sorted(x["instances"] for x in lines) == [4, 5]
    assert {x["uuid"] for x in lines} == {r["uuid"] for r in a.store.live()}


# --- 3. a corrupt or lost database ------------------------------------------------------------------------


def _scored_twice(tmp_path: Path, shown: list):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4, seed=1), export / "a")
    copy(make_series(tmp_path, "b", 5, seed=2, noise_hu=60.0), export / "b")
    a = agent(state, export, clock, shown, **RETAKE)
    settle(a, clock)
    assert len(shown) == 2 and len(jsonl(state)) == 2
    return export, state, clock, a


@pytest.mark.slow
def test_a_corrupt_database_is_moved_aside_and_rebuilt_without_alerting_old_series_again(tmp_path):
    shown: list = []
    export, state, clock, first = _scored_twice(tmp_path, shown)
    before = jsonl(state)
    first.close()
    db = state / "state.sqlite"
    garbage = os.urandom(db.stat().st_size)
    db.write_bytes(garbage)
    second = agent(state, export, clock, shown, **RETAKE)
    (aside,) = state.glob("state.sqlite.corrupt-*")
    assert aside.read_bytes() == garbage  # kept for a post-mortem
    assert any("rebuilt" in r for r in second.health().reasons)
    second.reconcile()
    settle(second, clock)
    assert len(shown) == 2  # re-indexed and re-scored, but nothing new to say
    assert jsonl(state) == before
    live = second.store.live()
    assert sorted(r["uuid"] for r in live) == sorted(x["uuid"] for x in before)
    assert second.health().status == "ok"
    copy(make_series(tmp_path, "c", 3, seed=3), export / "c")  # a new series after the rebuild is reported
    second.reconcile()
    settle(second, clock)
    assert len(shown) == 3 and len(jsonl(state)) == 3
    ids = [x["result_id"] for x in jsonl(state)]
    assert len(set(ids)) == 3  # result ids did not start again at 1


@pytest.mark.slow
def test_a_database_corrupted_while_running_is_rebuilt(tmp_path):
    shown: list = []
    export, state, clock, a = _scored_twice(tmp_path, shown)
    db = state / "state.sqlite"
    a.db.query("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(db, "r+b") as fh:  # every page but the first one: the tables
        fh.seek(4096)
        fh.write(os.urandom(db.stat().st_size - 4096))
    other = sqlite3.connect(str(db))
    other.execute("PRAGMA user_version=2")  # another writer: the agent's page cache is dropped
    other.close()
    copy(make_series(tmp_path, "c", 3, seed=3), export / "c")
    a.reconcile()
    settle(a, clock, passes=6)
    assert len(list(state.glob("state.sqlite.corrupt-*"))) == 1
    assert len(shown) == 3 and len(jsonl(state)) == 3
    assert len(a.store.live()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("alerts_first", [False, True], ids=["agent", "alerts-first"])
def test_a_lost_database_is_seeded_from_results_jsonl(tmp_path, alerts_first, capsys):
    from mediqa.cli.main import main

    shown: list = []
    export, state, clock, first = _scored_twice(tmp_path, shown)
    first.close()
    for f in state.glob("state.sqlite*"):
        f.unlink()
    if alerts_first:  # someone looks at the alerts before the agent starts: told why, nothing is created
        assert main(["alerts", "--state-dir", str(state)]) == 1
        assert "no state database" in capsys.readouterr().err
        assert not list(state.glob("state.sqlite*"))
    second = agent(state, export, clock, shown, **RETAKE)
    second.reconcile()
    settle(second, clock)
    assert len(shown) == 2 and len(jsonl(state)) == 2
    retakes = second.store.live("retake")
    assert len(retakes) == 2  # both alerts are still live (and reminded until acknowledged)
    assert {r["uuid"] for r in retakes} == {x["uuid"] for x in jsonl(state)}


# --- 7. uuids, an idempotent outbox, superseding, acknowledgements, the console line ---------------------


def test_every_result_has_a_uuid_and_reaches_the_jsonl_once_whatever_the_crash(tmp_path):
    shown: list = []
    export, state, clock, a = _scored_twice(tmp_path, shown)
    lines = jsonl(state)
    assert all(uuid.UUID(x["uuid"]).version == 4 for x in lines)
    assert len({x["uuid"] for x in lines}) == 2 and all(isinstance(x["result_id"], int) for x in lines)
    a.close()
    db = state / "state.sqlite"

    def unmark(where: str = "1=1") -> None:  # killed after the line was written, before the database knew
        conn = sqlite3.connect(str(db))
        conn.execute(f"UPDATE results SET jsonl_at=NULL WHERE {where}")
        conn.commit()
        conn.close()

    unmark()
    agent(state, export, clock).close()
    assert jsonl(state) == lines
    text = (state / "results.jsonl").read_text()
    (state / "results.jsonl").write_text(text[: len(text) - 40])  # killed while writing the last line
    unmark("id=(SELECT MAX(id) FROM results)")
    agent(state, export, clock).close()
    again = jsonl(state)
    assert sorted(x["uuid"] for x in again) == sorted(x["uuid"] for x in lines)


def test_a_reopened_series_line_says_what_it_supersedes_and_that_it_is_live(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    *early, late = make_series(tmp_path, "a", 5)
    copy(early, export / "a")
    a = agent(state, export, clock)
    settle(a, clock)
    copy([late], export / "a")
    a.reconcile()
    settle(a, clock)
    first, second = jsonl(state)
    assert first["live"] is True and first["supersedes"] is None
    assert second["live"] is True and second["supersedes"] == first["uuid"] and second["instances"] == 5
    assert [h["live"] for h in a.store.history()] == [False, True]


def test_an_acknowledged_alert_superseded_by_an_equal_verdict_stays_acknowledged(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    *early, late = make_series(tmp_path, "a", 5)
    copy(early, export / "a")
    a = agent(state, export, clock, **RETAKE)
    settle(a, clock)
    (alert,) = a.store.live("retake")
    assert a.store.acknowledge(alert["result_id"], "tech")
    copy([late], export / "a")
    a.reconcile()
    settle(a, clock)
    (again,) = a.store.live("retake")
    assert again["uuid"] != alert["uuid"] and again["acknowledged"]


def test_a_result_committed_but_never_shown_is_shown_late_after_a_restart(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4), export / "a")

    def killed(result, result_id):
        raise KeyboardInterrupt  # the process dies after the commit, before the console line

    a = agent(state, export, clock, on_result=killed)
    with pytest.raises(KeyboardInterrupt):
        settle(a, clock)
    assert len(a.store.history()) == 1
    stream = io.StringIO()
    b = agent(state, export, clock, on_result=ConsoleReporter("never", stream))
    settle(b, clock)
    (line,) = stream.getvalue().splitlines()
    assert "(shown late)" in line
    stream2 = io.StringIO()
    settle(agent(state, export, clock, on_result=ConsoleReporter("never", stream2)), clock)
    assert stream2.getvalue() == ""
    assert len(jsonl(state)) == 1


def test_a_dead_file_watcher_is_reported_and_replaced(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    a = agent(state, export, clock)
    a.step()

    class Dead:
        stopped = False

        def alive(self) -> bool:
            return False

        def failure(self) -> str:
            return "a watchdog thread died (RuntimeError)"

        def stop(self) -> None:
            self.stopped = True

    dead = Dead()
    assert a._check_watcher(dead) is None and dead.stopped
    assert any("watcher stopped" in r for r in a.health().reasons)
    clock.now += 31
    fresh = a._check_watcher(None)  # retried after WATCHER_RETRY_S
    try:
        assert fresh is not None and fresh.alive()
        a._check_watcher(fresh)
        assert a.health().status == "ok"
    finally:
        fresh.stop()
