"""The state-DB module: one connection and schema for the tracker and the result store."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from test_state_migration import V0_STORE_SCHEMA, V0_TRACKER_SCHEMA

from mediqa.agent.config import config_from_dict
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.agent.state.db import SCHEMA_VERSION, StateDB
from mediqa.errors import ConfigError


def _columns(path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(str(path))
    try:
        objects = conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table','index') "
                               "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        return {name: conn.execute(f"PRAGMA {kind}_info({name})").fetchall() for name, kind in objects}
    finally:
        conn.close()


def test_new_database_is_wal_and_current_version(tmp_path):
    with StateDB.open(tmp_path / "new" / "state.sqlite") as db:
        assert db.version == SCHEMA_VERSION
        assert db.query_one("PRAGMA journal_mode") == ("wal",)
        assert db.query_one("PRAGMA synchronous") == (1,)  # NORMAL
        tables = {n for (n,) in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"series", "instances", "files", "slice_saliency", "results"} <= tables


def test_migrated_schema_is_the_new_schema(tmp_path):
    with StateDB.open(tmp_path / "fresh.sqlite"):
        pass
    old = sqlite3.connect(str(tmp_path / "old.sqlite"))
    old.executescript(V0_TRACKER_SCHEMA)  # a version-0 file of a tracker-only test: no results table yet
    old.close()
    with StateDB.open(tmp_path / "old.sqlite") as db:
        assert db.version == SCHEMA_VERSION
    assert _columns(tmp_path / "old.sqlite") == _columns(tmp_path / "fresh.sqlite")
    both = sqlite3.connect(str(tmp_path / "both.sqlite"))
    both.executescript(V0_TRACKER_SCHEMA + V0_STORE_SCHEMA)
    both.close()
    StateDB.open(tmp_path / "both.sqlite").close()
    assert _columns(tmp_path / "both.sqlite") == _columns(tmp_path / "fresh.sqlite")


def test_newer_version_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "state.sqlite"
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA user_version=7")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"schema version 7, newer than this agent knows \(2\)"):
        StateDB.open(path)
    assert path.read_bytes() == before  # not even switched to WAL


def test_a_migration_blocked_by_another_process_says_so(tmp_path):
    path = tmp_path / "state.sqlite"
    other = sqlite3.connect(str(path), isolation_level=None)
    other.executescript(V0_TRACKER_SCHEMA)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ConfigError, match="locked by another process"):
            StateDB.open(path, timeout_s=0.1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with StateDB.open(path) as db:
        assert db.version == SCHEMA_VERSION


def test_transaction_rolls_back_on_error(tmp_path):
    with StateDB.open(tmp_path / "s.sqlite") as db:
        with pytest.raises(RuntimeError), db.transaction() as tx:
            tx.execute("INSERT INTO files (path, size, mtime_ns, status) VALUES (x'61', 1, 1, 'indexed')")
            raise RuntimeError("boom")
        assert db.query("SELECT * FROM files") == []


def test_queries_from_another_thread_are_serialised(tmp_path):
    """``mediqa watch --exit-when-idle`` asks ``idle()`` from its own thread while the loop writes."""
    with StateDB.open(tmp_path / "s.sqlite") as db:
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(200):
                    db.query("SELECT COUNT(*) FROM files")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=reader)
        t.start()
        for i in range(200):
            with db.transaction() as tx:
                tx.execute("INSERT INTO files (path, size, mtime_ns, status) VALUES (?, 1, 1, 'indexed')",
                           (str(i).encode(),))
        t.join()
        assert not errors and db.query_one("SELECT COUNT(*) FROM files") == (200,)


def test_agent_opens_one_database_for_tracker_and_store(tmp_path):
    cfg = config_from_dict({"state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"}})
    (tmp_path / "export").mkdir()
    agent = Agent(cfg, ClassicalScorer(), tmp_path / "export")
    assert agent.tracker.db is agent.db and agent.store.db is agent.db
    assert agent.db.path == (tmp_path / "state" / "state.sqlite").resolve()


def test_folders_follow_files_moved_added_and_replaced(tmp_path):
    """The tracker's folders answer is kept between calls, but never outlives a change of the files."""
    from mediqa.agent.config import CompletionConfig
    from mediqa.agent.series.tracker import FileOutcome, SeriesTracker
    from mediqa.agent.state.db import StateDB, db_path

    db = StateDB.open(tmp_path / "state.sqlite")
    tracker = SeriesTracker(db, CompletionConfig())

    def skip(path: str, uid: str) -> None:
        out = FileOutcome(path, 1, 1)
        out.reason, out.series_uid = "incomplete", uid
        tracker.apply([out])

    skip("/e/a/1.dcm", "S")
    assert tracker.folders("S") == {"/e/a"}
    skip("/e/b/2.dcm", "S")
    assert tracker.folders("S") == {"/e/a", "/e/b"}
    with db.transaction() as conn:
        conn.execute("UPDATE files SET series_uid='T' WHERE path=?", (db_path("/e/b/2.dcm"),))
    assert tracker.folders("S") == {"/e/a"} and tracker.folders("T") == {"/e/b"}
    with db.transaction() as conn:
        conn.execute("DELETE FROM files WHERE path=?", (db_path("/e/a/1.dcm"),))
    skip("/e/c/1.dcm", "S")
    assert tracker.folders("S") == {"/e/c"}
    db.close()
