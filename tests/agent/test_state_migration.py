"""The state database across agent versions: today's (version 0, pickled records) is migrated once,
in place; a newer or unreadable one is refused with a clear error, never recreated.

The version-0 database is built here with the old schema copied verbatim and records pickled the
way the old tracker wrote them (``pickle.dumps(record)``, including the since-removed ``extra``).
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections import OrderedDict
from pathlib import Path

import pytest

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import read_header
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.agent.state.db import SCHEMA_VERSION, StateDB
from mediqa.errors import ConfigError

# Verbatim: agent/series/tracker.py and agent/report/store.py before the schema had a version.
V0_TRACKER_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, series_key TEXT NOT NULL, modality TEXT NOT NULL,
    state TEXT NOT NULL, instances INTEGER NOT NULL, expected INTEGER,
    first_arrival REAL NOT NULL, last_arrival REAL NOT NULL, completed_at REAL, scored_at REAL,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT NOT NULL, record BLOB NOT NULL,
    arrived REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS slice_saliency (
    path TEXT NOT NULL, frame INTEGER NOT NULL, tile INTEGER NOT NULL, series_uid TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (path, frame, tile)
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, attempts INTEGER NOT NULL DEFAULT 0
);
"""
V0_STORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, series_key TEXT NOT NULL,
    generation INTEGER NOT NULL, created REAL NOT NULL, modality TEXT, score REAL, decision TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 1, superseded_by INTEGER, acknowledged_at REAL, acknowledged_by TEXT,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_series ON results(series_uid);
"""
# Verbatim: agent/state/db.py at schema version 1 (records as JSON, paths as TEXT, results without uuids).
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, series_key TEXT NOT NULL, modality TEXT NOT NULL,
    state TEXT NOT NULL, instances INTEGER NOT NULL, expected INTEGER,
    first_arrival REAL NOT NULL, last_arrival REAL NOT NULL, completed_at REAL, scored_at REAL,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT NOT NULL, record TEXT NOT NULL,
    arrived REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS slice_saliency (
    path TEXT NOT NULL, frame INTEGER NOT NULL, tile INTEGER NOT NULL, series_uid TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (path, frame, tile)
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, series_key TEXT NOT NULL,
    generation INTEGER NOT NULL, created REAL NOT NULL, modality TEXT, score REAL, decision TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 1, superseded_by INTEGER, acknowledged_at REAL, acknowledged_by TEXT,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_series ON results(series_uid);
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _config(state: Path):
    return config_from_dict({"state_dir": str(state), "completion": {"quiet_period_s": {"default": 1.0}},
                             "watch": {"file_stable_s": 0.0, "reconcile_interval_s": 3600.0},
                             "scoring": {"scorer": "classical"}})


def _old_pickle(record) -> bytes:
    """``pickle.dumps(record)`` as the version-0 tracker wrote it: its records still had ``extra``."""
    if "extra" not in record.__dict__:
        object.__setattr__(record, "extra", {})
    return pickle.dumps(record)


def _v0_db(path: Path, records, blob=_old_pickle) -> None:
    """A version-0 state database: one scored series with a live result, its files and saliency."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V0_TRACKER_SCHEMA)
    conn.executescript(V0_STORE_SCHEMA)
    first = records[0]
    conn.execute("INSERT INTO series VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (first.series_uid, first.series_key, first.modality, "scored", len(records), None,
                  10.0, 12.0, 14.0, 15.0, 1))
    for i, rec in enumerate(records):
        conn.execute("INSERT INTO files VALUES (?,?,?,?,?,0)", (rec.path, rec.size, rec.mtime_ns, "indexed", None))
        conn.execute("INSERT INTO instances VALUES (?,?,?,?,?)",
                     (rec.sop_instance_uid, rec.series_uid, rec.path, blob(rec), 10.0 + i))
        conn.execute("INSERT INTO slice_saliency VALUES (?,?,?,?,?)", (rec.path, -1, -1, rec.series_uid, 0.5 + i))
    conn.execute("INSERT INTO files VALUES (?,?,?,?,?,?)", ("/export/junk.txt", 9, 1, "skipped", "not_dicom", 1))
    payload = {"series_uid": first.series_uid, "series_key": first.series_key, "modality": "CT", "score": 3.5,
               "decision": "retake", "reasons": ["noisy"], "instances": len(records)}
    conn.execute("INSERT INTO results (series_uid, series_key, generation, created, modality, score, decision, json) "
                 "VALUES (?,?,?,?,?,?,?,?)", (first.series_uid, first.series_key, 1, 15.0, "CT", 3.5, "retake",
                                              json.dumps(payload)))
    conn.close()


@pytest.fixture
def phantom_records(tmp_path):
    src = tmp_path / "phantom"
    write_phantom_ct(src, noise_hu=5.0, seed=0, slices=3, size=32)
    return [read_header(p) for p in sorted(src.iterdir())]


def _agent(state: Path, tmp_path: Path) -> Agent:
    export = tmp_path / "export"
    export.mkdir(exist_ok=True)
    return Agent(_config(state), ClassicalScorer(), export, clock=Clock())


def test_version_0_database_is_migrated_in_place(tmp_path, phantom_records):
    state = tmp_path / "state"
    db_path = state / "state.sqlite"
    _v0_db(db_path, phantom_records)
    uid = phantom_records[0].series_uid

    agent = _agent(state, tmp_path)

    (st,) = agent.tracker.all_states()
    assert (st.series_uid, st.state, st.instances, st.generation) == (uid, "scored", 3, 1)
    assert agent.tracker.records(uid) == phantom_records  # frozen records compare equal, tuples and all
    assert all(agent.tracker.file_known(r.path, r.size, r.mtime_ns) for r in phantom_records)
    assert agent.tracker.file_known("/export/junk.txt", 9, 1)
    assert len(agent.tracker.saliency(uid)) == 3
    (live,) = agent.store.live("retake")
    assert live["series_uid"] == uid and not live["acknowledged"]
    assert len(agent.store.history()) == 1
    # The same jsonl outbox still works on the migrated history.
    lines = (state / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["result_id"] for x in lines] == [live["result_id"]]
    # On disk: versioned, and no pickle left.
    raw = sqlite3.connect(str(db_path))
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] >= 1
        for (blob,) in raw.execute("SELECT record FROM instances"):
            assert isinstance(blob, str) and json.loads(blob)["series_uid"] == uid
    finally:
        raw.close()


def test_migrated_database_reopens_and_keeps_scoring(tmp_path, phantom_records):
    state = tmp_path / "state"
    _v0_db(state / "state.sqlite", phantom_records)
    _agent(state, tmp_path)
    again = _agent(state, tmp_path)  # second start: nothing left to migrate
    assert again.tracker.records(phantom_records[0].series_uid) == phantom_records
    assert len(again.store.history()) == 1


def test_newer_schema_version_is_refused(tmp_path, phantom_records):
    state = tmp_path / "state"
    db_path = state / "state.sqlite"
    _v0_db(db_path, phantom_records)
    raw = sqlite3.connect(str(db_path))
    raw.execute("PRAGMA user_version=99")
    raw.commit()
    raw.close()
    with pytest.raises(ConfigError, match="newer") as exc:
        _agent(state, tmp_path)
    assert "99" in str(exc.value) and exc.value.remedy
    raw = sqlite3.connect(str(db_path))
    try:  # left exactly as it was
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 99
        assert raw.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 3
    finally:
        raw.close()


def test_an_unreadable_database_is_refused_by_readers_and_moved_aside_by_the_agent(tmp_path):
    """``mediqa alerts`` (``StateDB.open``) refuses it and leaves it alone; the agent keeps it aside, starts anew."""
    state = tmp_path / "state"
    state.mkdir()
    garbage = b"this is not a database, whatever its name says" * 100
    (state / "state.sqlite").write_bytes(garbage)
    with pytest.raises(ConfigError, match="cannot be read") as exc:
        StateDB.open(state / "state.sqlite")
    assert exc.value.remedy
    assert (state / "state.sqlite").read_bytes() == garbage
    agent = _agent(state, tmp_path)
    (aside,) = state.glob("state.sqlite.corrupt-*")
    assert aside.read_bytes() == garbage
    assert agent.db.version == SCHEMA_VERSION


def test_migration_refuses_foreign_pickles_and_changes_nothing(tmp_path, phantom_records):
    """Only the agent's own record classes are unpickled; anything else aborts the whole migration."""
    state = tmp_path / "state"
    db_path = state / "state.sqlite"
    _v0_db(db_path, phantom_records, blob=lambda rec: pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(ConfigError, match="record"):
        _agent(state, tmp_path)
    raw = sqlite3.connect(str(db_path))
    try:  # rolled back: still version 0, still the old rows
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 0
        assert raw.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 3
        assert all(isinstance(b, bytes) for (b,) in raw.execute("SELECT record FROM instances"))
    finally:
        raw.close()


def _v1_db(path: Path, records) -> None:
    """A version-1 state database: one series scored twice (the first result superseded), JSON records."""
    from mediqa.agent.dicom.records import record_to_json

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V1_SCHEMA)
    first = records[0]
    conn.execute("INSERT INTO series VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (first.series_uid, first.series_key, first.modality, "scored", len(records), None,
                  10.0, 12.0, 14.0, 15.0, 2))
    for i, rec in enumerate(records):
        conn.execute("INSERT INTO files VALUES (?,?,?,?,?,0)", (rec.path, rec.size, rec.mtime_ns, "indexed", None))
        conn.execute("INSERT INTO instances VALUES (?,?,?,?,?)",
                     (rec.sop_instance_uid, rec.series_uid, rec.path, record_to_json(rec), 10.0 + i))
        conn.execute("INSERT INTO slice_saliency VALUES (?,?,?,?,?)", (rec.path, -1, -1, rec.series_uid, 0.5 + i))
    for n, decision in enumerate(("ok", "retake"), 1):
        payload = {"series_uid": first.series_uid, "series_key": first.series_key, "modality": "CT", "score": 3.5,
                   "decision": decision, "reasons": [], "instances": len(records)}
        conn.execute("INSERT INTO results (series_uid, series_key, generation, created, modality, score, decision, "
                     "live, superseded_by, json) VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (first.series_uid, first.series_key, n, 15.0 + n, "CT", 3.5, decision, int(n == 2),
                      2 if n == 1 else None, json.dumps(payload)))
    conn.execute("PRAGMA user_version=1")
    conn.close()
    with open(path.parent / "results.jsonl", "w") as fh:  # the outbox of version 1: ids, no uuids
        for n in (1, 2):
            fh.write(json.dumps({"result_id": n, "series_uid": first.series_uid}) + "\n")


def test_version_1_database_gets_bytes_safe_paths_and_result_uuids(tmp_path, phantom_records):
    state = tmp_path / "state"
    db_path = state / "state.sqlite"
    _v1_db(db_path, phantom_records)
    uid = phantom_records[0].series_uid

    agent = _agent(state, tmp_path)

    assert agent.db.version == SCHEMA_VERSION == 2
    assert agent.tracker.records(uid) == phantom_records
    assert all(agent.tracker.file_known(r.path, r.size, r.mtime_ns) for r in phantom_records)
    assert set(agent.tracker.saliency(uid)) == {(r.path, None, None) for r in phantom_records}
    first, second = agent.store.history(uid)
    assert (first["live"], second["live"]) == (False, True)
    assert first["uuid"] != second["uuid"] and second["supersedes"] == first["uuid"]
    assert [json.loads(x)["result_id"] for x in (state / "results.jsonl").read_text().splitlines()] == [1, 2]
    raw = sqlite3.connect(str(db_path))
    try:
        for table in ("files", "instances", "slice_saliency"):
            assert {t for (t,) in raw.execute(f"SELECT typeof(path) FROM {table}")} == {"blob"}, table
    finally:
        raw.close()
    again = _agent(state, tmp_path)  # nothing left to migrate, nothing written twice
    assert len(again.store.history()) == 2
    assert len((state / "results.jsonl").read_text().splitlines()) == 2
