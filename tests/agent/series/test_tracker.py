"""Series completion with an injected clock: quiet period, early completion, re-open, restart."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mediqa.agent.config import CompletionConfig
from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord
from mediqa.agent.series.tracker import SeriesTracker
from mediqa.agent.state.db import StateDB


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rec(i: int, series: str = "1.2.3", expected: int | None = None, modality: str = "CT") -> InstanceRecord:
    return InstanceRecord(
        path=f"/x/{series}/{i}", size=1, mtime_ns=1, sop_instance_uid=f"{series}.{i}", series_uid=series,
        study_uid="9", sop_class_uid="1.2.840.10008.5.1.4.1.1.2", transfer_syntax="1.2.840.10008.1.2.1",
        modality=modality, rows=8, columns=8, instance_number=i, images_in_acquisition=expected,
        frames=(FrameGeometry((0.0, 0.0, float(i)), (1, 0, 0, 0, 1, 0)),))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _tracker(tmp_path, clock, **kw) -> SeriesTracker:
    cfg = CompletionConfig(quiet_period_s={"default": 10.0, "CT": 5.0}, **kw)
    return SeriesTracker(StateDB.open(tmp_path / "s.sqlite"), cfg, clock)


def test_complete_after_modality_quiet_period(tmp_path, clock):
    t = _tracker(tmp_path, clock)
    for i in range(3):
        t.add(_rec(i))
    clock.now += 4.9
    assert t.due() == []
    clock.now += 0.2
    (st,) = t.due()
    assert st.instances == 3 and st.state == "complete"


def test_early_completion_on_expected_count(tmp_path, clock):
    t = _tracker(tmp_path, clock)
    for i in range(3):
        t.add(_rec(i, expected=3))
        assert bool(t.due()) == (i == 2)


def test_duplicate_instance_counts_once(tmp_path, clock):
    t = _tracker(tmp_path, clock)
    assert t.add(_rec(1))
    assert not t.add(replace(_rec(1), path="/elsewhere/1"))
    assert t.state("1.2.3").instances == 1


def test_late_instance_reopens_and_scoring_is_guarded(tmp_path, clock):
    t = _tracker(tmp_path, clock)
    t.add(_rec(0))
    clock.now += 6
    (st,) = t.due()
    with t.db.transaction() as db:
        assert t.mark_scored(db, st.series_uid, st.generation)
    t.add(_rec(1))
    assert t.state("1.2.3").state == "reopened"
    clock.now += 6
    (again,) = t.due()
    assert again.instances == 2 and again.generation == 1
    # A stale generation (scored with old data) is refused.
    with t.db.transaction() as db:
        assert not t.mark_scored(db, again.series_uid, 0)


def test_restart_resumes_pending_and_not_scored(tmp_path, clock):
    t = _tracker(tmp_path, clock)
    t.add(_rec(0, series="a"))
    t.add(_rec(0, series="b"))
    clock.now += 6
    for st in t.due():
        if st.series_uid == "a":
            with t.db.transaction() as db:
                t.mark_scored(db, st.series_uid, st.generation)
    t2 = _tracker(tmp_path, clock)  # a new process on the same database
    due = [s.series_uid for s in t2.due()]
    assert due == ["b"]
    assert [r.sop_instance_uid for r in t2.records("b")] == ["b.0"]


def test_records_kept_from_insert_are_the_stored_ones_and_bounded(tmp_path, clock, monkeypatch):
    """``records`` hands back the records indexed by this process without decoding them again: always what
    the database holds now (a row rewritten by another process is read anew), bounded, dropped when idle."""
    import mediqa.agent.series.tracker as tracker_mod

    decoded: list[str] = []
    real = tracker_mod.record_from_json

    def counting(text):
        decoded.append(text)
        return real(text)

    monkeypatch.setattr(tracker_mod, "record_from_json", counting)
    t = _tracker(tmp_path, clock)
    records = [_rec(i, expected=9) for i in range(5)]
    t.add_many(records)
    assert t.records("1.2.3") == records and decoded == []  # kept from the insert
    t._records_memo = None
    assert t.records("1.2.3") == records and len(decoded) == 5  # handed over once, then decoded

    other = _tracker(tmp_path, clock)  # another process rewrites a row behind this one's back
    t.add(_rec(7, expected=9))
    other.add(replace(_rec(7, expected=9), rows=16))
    decoded.clear()
    assert [r.rows for r in t.records("1.2.3")] == [8] * 5 + [16]
    assert len(decoded) == 1  # the row rewritten behind its back: the memo's record of 7 (8 rows) was not reused
    decoded.clear()
    t.add(_rec(8, expected=9))  # one more arrives (the series asked before: passed to the model early)
    assert len(t.records("1.2.3")) == 7 and len(decoded) == 0  # the memo's six, and the new one kept from its insert

    monkeypatch.setattr(tracker_mod, "DECODED_MAX", 3)
    t.add_many([_rec(i, series="4.5", expected=10) for i in range(10)])
    assert len(t._decoded) == 3
    decoded.clear()
    assert [r.instance_number for r in t.records("4.5")] == list(range(10)) and len(decoded) == 7
    t.add_many([_rec(i, series="8.9") for i in range(2)])  # no count: completes after a quiet period, not kept
    assert t._decoded == {}
    t.add_many([_rec(i, series="6.7", expected=2) for i in range(2)])
    assert len(t._decoded) == 2
    t.forget_decoded()
    assert t._decoded == {} and t._records_memo is None


def test_folder_rows_are_the_files_directly_in_the_folder(tmp_path, clock):
    t = _tracker(tmp_path, clock)
    names = ["/e/a/1", "/e/a/2", "/e/a/sub/3", "/e/a-b/4", "/e/a0/5", "/e/ab/6", "/e/a/caf\udce9"]  # last: not UTF-8
    for i, path in enumerate(names):
        t.record_skip(path, i, i, "not_dicom", final=True)
    rows = t.folder_rows("/e/a")
    assert set(rows) == {"/e/a/1", "/e/a/2", "/e/a/caf\udce9"}
    assert rows["/e/a/2"] == t.file_row("/e/a/2")
    assert t.folder_rows("/e/none") == {}
    assert t.file_known("/e/a/1", 0, 0, rows) and not t.file_known("/e/a/1", 1, 0, rows)
    assert t.file_known("/e/a-b/4", 3, 3, rows)  # not among the rows: looked up on its own
