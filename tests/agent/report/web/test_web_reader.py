"""The console's read-only view of the state: defensive about the schema, never a writer, and what the
status strip says about a real agent."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from web_support import State

from mediqa.agent.config import config_from_dict
from mediqa.agent.report.web import ConsoleConfig, agent_status, parse_listen
from mediqa.agent.report.web.app import ConsoleApp
from mediqa.agent.report.web.reader import StateReader, StateUnavailable
from mediqa.agent.report.web.status import EXPORT_UNREADABLE, folder_label
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.agent.state.db import STATE_FILE

V1_RESULTS = """CREATE TABLE results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, series_key TEXT NOT NULL,
    generation INTEGER NOT NULL, created REAL NOT NULL, modality TEXT, score REAL, decision TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 1, superseded_by INTEGER, acknowledged_at REAL, acknowledged_by TEXT,
    json TEXT NOT NULL)"""


def test_an_older_results_table_still_shows_what_it_has(tmp_path, phantoms):
    path = tmp_path / STATE_FILE
    conn = sqlite3.connect(path)
    conn.execute(V1_RESULTS)
    payload = json.dumps(phantoms["retake"][1].to_json())
    conn.execute("INSERT INTO results (series_uid, series_key, generation, created, modality, score, decision, json) "
                 "VALUES ('1.2', 's-1', 1, 1.0, 'CT', 0.0, 'retake', ?)", (payload,))
    conn.commit()
    conn.close()
    app = ConsoleApp(ConsoleConfig(), tmp_path, parse_listen("127.0.0.1:0"))
    try:
        (card,) = app.cards(app.reader.after(0))
        assert card["uuid"] is None and card["headline"] == "RETAKE SUGGESTED" and card["feedback"] == []
        assert app.reader.get("00000000-0000-0000-0000-000000000000") is None
        assert app.reader.head() == (1, 0)  # no feedback table: nobody answered yet
        assert app.detail(app.reader.get("1"))["where"] == "slice 1 of 8 at 0 mm"
    finally:
        app.close()


def test_the_reader_never_writes_and_follows_a_replaced_file(tmp_path, phantoms):
    state = State(tmp_path)
    first = state.add(*phantoms["ok"], sheet=False)
    reader = StateReader(tmp_path / STATE_FILE)
    try:
        assert reader.get(str(first))["decision"] == "ok"
        with pytest.raises(StateUnavailable):
            reader.query("DELETE FROM results")
        assert reader.head()[0] == first
        state.close()
        os.replace(tmp_path / STATE_FILE, tmp_path / "state.sqlite.corrupt-x")  # as the agent moves a corrupt one
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{tmp_path / STATE_FILE}{suffix}"):
                os.unlink(f"{tmp_path / STATE_FILE}{suffix}")
        with pytest.raises(StateUnavailable, match="does not exist"):
            reader.head()
        fresh = State(tmp_path)
        try:
            fresh.add(*phantoms["retake"], sheet=False)
            fresh.add(*phantoms["retake"], sheet=False)
            assert [r["decision"] for r in reader.after(0)] == ["retake", "retake"]
        finally:
            fresh.close()
    finally:
        reader.close()


def test_agent_status_of_a_real_agent(tmp_path):
    export = tmp_path / "export"
    write_phantom_ct(export / "DOE^JOHN", noise_hu=4.0, seed=0, slices=4, size=64)
    config = config_from_dict({"state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"},
                               "watch": {"file_stable_s": 0.0, "reconcile_interval_s": 3600.0}})
    agent = Agent(config, ClassicalScorer(), export)
    try:
        agent.step()
        st = agent_status(agent, last_file_at=lambda: 12.0)
        assert (st.folder, st.backend, st.scorer, st.last_file_at) == ("export", "numpy", "classical", 12.0)
        assert st.reasons == () and st.export_readable and st.state_ok and isinstance(st.queue, int)
        assert "DOE" not in json.dumps(st.to_json(20.0)) and st.to_json(20.0)["last_file_age_s"] == 8.0
        os.replace(export, tmp_path / "gone")  # the share went away
        st = agent_status(agent, extra=lambda: ["the agent loop stopped"])
        assert EXPORT_UNREADABLE in st.reasons and "the agent loop stopped" in st.reasons and st.degraded
    finally:
        agent.close()
    assert folder_label("/data/exports/CT1/") == "CT1"


def test_history_restored_from_results_jsonl_is_not_news(tmp_path, phantoms):
    state = State(tmp_path)
    try:
        restored = state.add(*phantoms["retake"], sheet=False)
        with state.db.transaction() as conn:  # as seed_from_jsonl leaves a rebuilt database
            conn.execute("UPDATE results SET origin='jsonl' WHERE id=?", (restored,))
        new = state.add(*phantoms["ok"], sheet=False)
        reader = StateReader(tmp_path / STATE_FILE)
        try:
            assert [r["result_id"] for r in reader.after(0)] == [new]  # an open page gets no old alert again
            assert [r["result_id"] for r in reader.recent()] == [restored, new]  # a new page shows both
        finally:
            reader.close()
    finally:
        state.close()
