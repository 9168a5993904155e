"""Feedback on results: stored with its time in the state database, acknowledging what it answers."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from mediqa.agent.config import config_from_dict
from mediqa.agent.pipeline import unscored_result
from mediqa.agent.report.feedback import (
    FeedbackError,
    buttons_for,
    ensure_table,
    feedback_after,
    feedback_for,
    kinds_for,
    last_feedback_id,
    record_feedback,
)
from mediqa.agent.report.store import ResultStore
from mediqa.agent.state.db import STATE_FILE, open_state


@pytest.fixture
def store(tmp_path):
    db = open_state(tmp_path)
    yield ResultStore(db, tmp_path / "results.jsonl")
    db.close()


def _add(store, decision, uid):
    result = unscored_result([], ["test"], series_uid=uid, series_key=f"s-{uid}", modality="CT")
    result = dataclasses.replace(result, decision=decision, score=1.0 if decision == "retake" else 3.5)
    with store.db.transaction() as conn:
        return store.add(conn, result, 0)


def test_an_answer_is_stored_with_its_time_and_acknowledges_the_alert(store):
    saved = _add(store, "retake", "1.2.3")
    assert feedback_for(store.db, [saved.result_id]) == {}  # no table yet: no feedback, no error
    fb = record_feedback(store.db, saved.result_id, "rescanned", note=" motion\x1b[2J ", initials="ab",
                         clock=lambda: 5.0)
    assert (fb.kind, fb.note, fb.initials, fb.created) == ("rescanned", "motion [2J", "ab", 5.0)
    assert (fb.result_uuid, fb.series_uid, fb.label) == (saved.uuid, "1.2.3", "rescanned")
    assert feedback_for(store.db, [saved.result_id, 999]) == {saved.result_id: [fb]}
    live = store.live("retake")[0]
    assert live["acknowledged"]  # mediqa alerts and the reminder at start agree with the page
    ack = store.db.query_one("SELECT acknowledged_at, acknowledged_by FROM results WHERE id=?", (saved.result_id,))
    assert ack == (5.0, "ab")
    again = record_feedback(store.db, saved.result_id, "false_alert", clock=lambda: 9.0)
    assert [f.kind for f in feedback_for(store.db, [saved.result_id])[saved.result_id]] == ["rescanned", "false_alert"]
    assert store.db.query_one("SELECT acknowledged_at FROM results WHERE id=?", (saved.result_id,)) == (5.0,)
    assert feedback_after(store.db, fb.id) == [again] and last_feedback_id(store.db) == again.id
    assert "series_uid" not in fb.to_json() and fb.to_json(with_series_uid=True)["series_uid"] == "1.2.3"


def test_answers_must_fit_the_verdict(store):
    ok = _add(store, "ok", "1.2.4")
    assert kinds_for("ok") == ("should_have_alerted",) and "false_alert" in kinds_for("retake")
    assert buttons_for("retake") == kinds_for("retake") and "seen" not in kinds_for("retake")
    with pytest.raises(FeedbackError, match="cannot be answered"):
        record_feedback(store.db, ok.result_id, "false_alert")
    with pytest.raises(FeedbackError, match="unknown feedback"):
        record_feedback(store.db, ok.result_id, "delete it")
    with pytest.raises(FeedbackError, match="no result 4242"):
        record_feedback(store.db, 4242, "seen")
    flagged = record_feedback(store.db, ok.result_id, "should_have_alerted", note="x" * 2000)
    assert len(flagged.note) == 500
    assert store.db.query_one("SELECT acknowledged_at FROM results WHERE id=?", (ok.result_id,)) == (None,)


def test_the_table_is_created_once_and_read_through_a_read_only_connection(store, tmp_path):
    ensure_table(store.db)
    ensure_table(store.db)
    saved = _add(store, "unscored", "1.2.5")
    fb = record_feedback(store.db, saved.result_id, "seen")
    ro = sqlite3.connect(f"{(tmp_path / STATE_FILE).as_uri()}?mode=ro", uri=True)
    try:
        assert feedback_for(ro, [saved.result_id]) == {saved.result_id: [fb]}
        with pytest.raises(sqlite3.OperationalError):
            ro.execute("DELETE FROM feedback")
    finally:
        ro.close()


def test_the_cli_and_the_page_use_the_same_function(tmp_path):
    cfg = config_from_dict({"state_dir": str(tmp_path)})
    db = open_state(cfg.state_path)
    try:
        saved = _add(ResultStore(db, tmp_path / "results.jsonl"), "retake", "1.2.6")
        assert record_feedback(db, saved.result_id, "accepted", initials="cli").kind == "accepted"
    finally:
        db.close()
