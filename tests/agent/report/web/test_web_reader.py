"""The console's read-only view of the state: defensive about the schema, never a writer, and what the
status strip says about a real agent."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
from web_support import State

from mediqa.agent.config import config_from_dict
from mediqa.agent.report.web import ConsoleConfig, agent_status, pages, parse_listen
from mediqa.agent.report.web.app import ConsoleApp
from mediqa.agent.report.web.reader import HistoryFilter, StateReader, StateUnavailable
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


def _age(state: State, rid: int, hours: float) -> None:
    with state.db.transaction() as conn:  # as if it had been committed ``hours`` ago
        conn.execute("UPDATE results SET created=created-? WHERE id=?", (hours * 3600.0, rid))


def test_an_old_unacknowledged_retake_leaves_the_live_view_and_stays_in_history(tmp_path, phantoms):
    state = State(tmp_path)
    app = ConsoleApp(ConsoleConfig(), tmp_path, parse_listen("127.0.0.1:0"), live_max_age_s=6 * 3600.0)
    try:
        old = state.add(*phantoms["retake"], sheet=False)
        _age(state, old, 7.0)
        fresh = state.add(*phantoms["ok"], sheet=False)
        since = app.live_since()
        assert since is not None and abs(since - (time.time() - 6 * 3600.0)) < 60
        assert [r["result_id"] for r in app.reader.recent(since=since)] == [fresh]  # what a new page shows
        assert [r["result_id"] for r in app.reader.after(0, since=since)] == [fresh]  # what a resuming page gets
        assert [r["result_id"] for r in app.reader.history(HistoryFilter())] == [fresh, old]
        assert app.reader.get(str(old))["decision"] == "retake"  # its detail page still opens
        (card,) = app.cards(app.reader.recent(since=since))
        assert card["live_until"] == pytest.approx(app.reader.get(str(fresh))["created"] + 6 * 3600.0)
    finally:
        app.close()
        state.close()


def test_results_scored_as_history_are_never_live_cards(tmp_path, phantoms):
    state = State(tmp_path)
    reader = StateReader(tmp_path / STATE_FILE)
    try:
        backlog = state.add(*phantoms["retake"], sheet=False)
        with state.db.transaction() as conn:  # as the agent stores an old series at its first start
            conn.execute("UPDATE results SET origin='history' WHERE id=?", (backlog,))
        new = state.add(*phantoms["ok"], sheet=False)
        assert [r["result_id"] for r in reader.recent()] == [new]
        assert [r["result_id"] for r in reader.after(0)] == [new]
        assert [(r["result_id"], r["origin"]) for r in reader.history(HistoryFilter())] == [(new, "scored"),
                                                                                           (backlog, "history")]
        app = ConsoleApp(ConsoleConfig(), tmp_path, parse_listen("127.0.0.1:0"))
        try:
            cards = app.cards(app.reader.history(HistoryFilter()))
            assert [c["history"] for c in cards] == [False, True]
            assert "old series: no alert" in pages.history_page(cards, HistoryFilter(), ["CT"], "x", 5.0)
        finally:
            app.close()
    finally:
        reader.close()
        state.close()


def test_no_max_age_keeps_every_live_result(tmp_path, phantoms):
    state = State(tmp_path)
    app = ConsoleApp(ConsoleConfig(), tmp_path, parse_listen("127.0.0.1:0"), live_max_age_s=None)
    try:
        old = state.add(*phantoms["retake"], sheet=False)
        _age(state, old, 700.0)
        assert app.live_since() is None
        (card,) = app.cards(app.reader.recent(since=app.live_since()))
        assert card["id"] == old and card["live_until"] is None
    finally:
        app.close()
        state.close()
