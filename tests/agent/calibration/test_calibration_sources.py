"""Reading what calibration needs: a state DB made by the agent's own code, results.jsonl, backfill Parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from calibration_support import write_state

from mediqa.agent.calibration.sources import (
    count_unanswered_ok_as_good,
    read_jsonl,
    read_parquet,
    read_results,
    read_state,
)
from mediqa.agent.report.feedback import record_feedback
from mediqa.agent.report.store import ResultStore
from mediqa.agent.state.db import open_state
from mediqa.errors import MediqaError

SERIES = [  # uid, description, modality, score, answer
    ("1.1", "STD Brain 5mm", "CT", 1.5, "false_alert"),  # an alert that was wrong: good
    ("1.2", "std_brain 5MM", "CT", 1.7, "accepted"),  # kept as it was: good
    ("1.3", "STD Brain 5mm", "CT", 0.8, "rescanned"),  # bad
    ("1.4", "STD Brain 5mm", "CT", 2.4, "should_have_alerted"),  # missed: bad
    ("1.5", "STD Brain 5mm", "CT", 1.2, None),  # an alert nobody answered: unlabelled
    ("1.6", "STD Brain 5mm", "CT", 3.1, None),  # ok, nobody said anything: unlabelled
    ("1.7", "t2_tse_tra", "MR", float("nan"), "seen"),  # unscored, seen: no score, no label
]


def test_labels_follow_the_documented_mapping(tmp_path: Path):
    write_state(tmp_path, SERIES)
    db = open_state(tmp_path)
    try:
        state = read_state(db, tmp_path / "results.jsonl")
    finally:
        db.close()
    labels = {r.series_uid: r.label for r in state.rows}
    assert labels == {"1.1": "good", "1.2": "good", "1.3": "bad", "1.4": "bad", "1.5": None, "1.6": None}
    assert {r.protocol for r in state.rows} == {"CT|std brain 5mm"}  # spelling variants are one protocol
    assert state.not_scored == 1 and state.results == 7
    assert state.rows[0].model == "edge-default 0123456789ab"
    counted = {r.series_uid: r.label for r in count_unanswered_ok_as_good(state.rows)}
    assert counted["1.6"] == "good" and counted["1.5"] is None  # only an ok series nobody flagged
    assert "1.7" not in state.labels  # seen labels nothing


def test_the_latest_answer_counts_and_its_result_gives_the_score(tmp_path: Path):
    ids = write_state(tmp_path, [("2.1", "Head", "CT", 1.4, "false_alert")])
    db = open_state(tmp_path)
    try:
        store = ResultStore(db, tmp_path / "results.jsonl")
        record_feedback(db, ids["2.1"], "rescanned")  # changed their mind: bad after all
        rescored = store.history()[-1]
        from mediqa.agent.scoring.base import SeriesResult

        with db.transaction() as conn:  # a late file re-scores the series; the answer was about the first result
            store.add(conn, SeriesResult.from_json(dict(rescored, score=3.5, decision="ok")), 1)
        state = read_state(db, tmp_path / "results.jsonl")
    finally:
        db.close()
    (row,) = state.rows
    assert (row.label, row.answer, row.score) == ("bad", "rescanned", 1.4)
    assert state.labels["2.1"].conflicting


def test_results_jsonl_gives_each_series_its_last_line(tmp_path: Path):
    write_state(tmp_path, SERIES)
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines()
    newer = dict(json.loads(lines[0]), score=2.9, decision="ok")
    path.write_text("\n".join([*lines, json.dumps(newer), '{"torn": ']) + "\n")
    rows, not_scored = read_jsonl(path)
    by_uid = {r.series_uid: r for r in rows}
    assert by_uid["1.1"].score == 2.9 and len(rows) == 6 and not_scored == 1
    assert rows[-1].series_uid == "1.1"  # file order by each series' newest line: the model in use is the last
    assert all(r.label is None and r.shown for r in rows)  # labels come from the state, joined by the caller


def test_backfill_parquet_rows_are_read_by_column_name(tmp_path: Path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    out = tmp_path / "backfill"
    (out / "results").mkdir(parents=True)
    table = pa.table({"series_uid": ["3.1", "3.2", "3.3"], "score": [1.1, 3.2, None],
                      "decision": ["retake", "ok", "unscored"], "modality": ["CT", "CT", "MR"],
                      "series_description": ["Abdomen 1.25mm", "Abdomen 1.25mm", "dwi"],
                      "station": ["CT01", "CT02", "MR01"], "model_sha256": ["ab" * 32] * 3,
                      "config_digest": ["c0ffee"] * 3, "scored_at": [1.0, 2.0, 3.0]})
    pq.write_table(table, out / "results" / "part-a-00000.parquet")
    pq.write_table(pa.table({"file_key": ["f-1"], "series_uid": ["3.9"], "reason": ["not DICOM"]}),
                   out / "skipped_files.parquet")  # not results: passed over
    rows, not_scored = read_results(out)
    assert [(r.series_uid, r.protocol, r.station, r.shown) for r in rows] == [
        ("3.1", "CT|abdomen 1 25mm", "CT01", False), ("3.2", "CT|abdomen 1 25mm", "CT02", False)]
    assert not_scored == 1 and rows[0].model == "abababababab"


def test_a_resumed_backfill_counts_each_series_once_with_its_newest_full_result(tmp_path: Path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    write_state(tmp_path / "state", SERIES[:1])
    (line,) = [json.loads(x) for x in (tmp_path / "state" / "results.jsonl").read_text().splitlines()]
    old, new = dict(line, score=1.5, model_sha256="11" * 32), dict(line, score=2.5, model_sha256="22" * 32)
    out = tmp_path / "backfill" / "results"
    out.mkdir(parents=True)
    for name, result, when in (("part-b-00000", new, 20.0), ("part-a-00000", old, 10.0)):
        pq.write_table(pa.table({"series_uid": [result["series_uid"]], "score": [result["score"]],
                                 "station": ["CT01"], "scored_at": [when], "result_json": [json.dumps(result)]}),
                       out / f"{name}.parquet")
    (row,) = read_results(tmp_path / "backfill")[0]
    assert (row.score, row.model, row.station) == (2.5, "edge-default 222222222222", "CT01")
    assert row.threshold_source == "modality CT" and row.anatomy == "head"  # from the full result


def test_without_pyarrow_parquet_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as on a console without the extra
    with pytest.raises(MediqaError, match="needs pyarrow") as info:
        read_parquet(tmp_path)
    assert "\n" not in str(info.value) and "pip install pyarrow" in str(info.value)


def test_a_folder_without_results_says_what_to_pass(tmp_path: Path):
    with pytest.raises(MediqaError, match="holds no .parquet files"):
        read_results(tmp_path)
    with pytest.raises(MediqaError, match="does not exist"):
        read_results(tmp_path / "nope.jsonl")
