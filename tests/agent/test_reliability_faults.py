"""Never down, never silent: a poison file or series is a recorded outcome, never a crash or a retry loop;
every complete series gets exactly one live result (ok, retake, unscored or skipped); file names that
are not UTF-8 are stored like any other."""

from __future__ import annotations

import io
import os
import sqlite3

import pydicom
import pytest
from test_reliability_support import Clock, agent, copy, jsonl, make_series, series_uid, settle

import mediqa.agent.pipeline as pipeline
import mediqa.agent.service as service
from mediqa.agent.report.console import ConsoleReporter, format_line
from mediqa.errors import DicomSkip, SeriesError

# --- 1. fault isolation -----------------------------------------------------------------------------


def test_an_exception_while_indexing_one_file_is_a_final_skip_remembered_across_restarts(tmp_path, monkeypatch):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    paths = copy(make_series(tmp_path, "a", 5), export / "a")
    poison = paths[2]
    real = service.read_header
    calls: list[str] = []

    def flaky(path, **kw):
        calls.append(path)
        if path == poison:
            raise ZeroDivisionError("a bug in the reader")
        return real(path, **kw)

    monkeypatch.setattr(service, "read_header", flaky)
    results: list = []
    first = agent(state, export, clock, results)
    settle(first, clock)
    assert [r.n_instances for r in results] == [4]
    assert first.tracker.file_row(poison)[2:4] == ("skipped", "internal: ZeroDivisionError")
    calls.clear()
    second = agent(state, export, clock, results)  # a restart: the poison is not read again
    second.reconcile()
    settle(second, clock)
    assert poison not in calls and len(results) == 1


def test_an_exception_while_scoring_one_series_is_an_unscored_result_remembered_across_restarts(tmp_path,
                                                                                                 monkeypatch):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4, seed=1), export / "a")
    copy(make_series(tmp_path, "b", 5, seed=2), export / "b")
    bad = series_uid(export / "a" / "0000.dcm")
    real = service.analyse_series
    scored: list[str] = []

    def buggy(records, *a, **kw):
        scored.append(records[0].series_uid)
        if records[0].series_uid == bad:
            raise RuntimeError("a bug in one series")
        return real(records, *a, **kw)

    monkeypatch.setattr(service, "analyse_series", buggy)
    results: list = []
    first = agent(state, export, clock, results)
    settle(first, clock)
    by_uid = {r.series_uid: r for r in results}
    assert len(results) == 2
    assert by_uid[bad].decision == "unscored" and by_uid[bad].reasons == ("internal error (RuntimeError)",)
    line = next(x for x in jsonl(state) if x["series_uid"] == bad)
    assert line["decision"] == "unscored" and line["score"] is None
    scored.clear()
    second = agent(state, export, clock, results)
    second.reconcile()
    settle(second, clock)
    assert scored == [] and len(results) == 2
    assert len(jsonl(state)) == 2


def test_a_series_that_kills_the_agent_three_times_is_reported_unscored(tmp_path, monkeypatch):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4), export / "a")

    def killer(*a, **kw):
        raise KeyboardInterrupt  # stands for a crash the process does not survive (a segfault in a decoder)

    monkeypatch.setattr(service, "analyse_series", killer)
    for _ in range(3):
        a = agent(state, export, clock)
        with pytest.raises(KeyboardInterrupt):
            settle(a, clock)
    results: list = []
    settle(agent(state, export, clock, results), clock)
    (result,) = results
    assert result.decision == "unscored" and "stopped the agent 3 times" in result.reasons[0]


# --- 2. bytes-safe paths ------------------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_indexed_scored_and_remembered(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    files = make_series(tmp_path, "a", 4)
    names = [os.fsdecode(b"\xff\xfe%d.dcm" % i) for i in range(4)]
    paths = copy(files, os.path.join(export, os.fsdecode(b"caf\xe9")), names)
    results: list = []
    first = agent(state, export, clock, results)
    settle(first, clock)
    assert [r.n_instances for r in results] == [4]
    assert all(first.tracker.file_known(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    assert {k[0] for k in first.tracker.saliency(results[0].series_uid)} <= set(paths)
    second = agent(state, export, clock, results)
    second.reconcile()
    settle(second, clock)
    assert len(results) == 1
    raw = sqlite3.connect(str(state / "state.sqlite"))
    try:
        stored = {bytes(p) for (p,) in raw.execute("SELECT path FROM files")}
    finally:
        raw.close()
    assert {os.fsencode(p) for p in paths} == stored


# --- 5. one live result per complete series -------------------------------------------------------------


def test_a_series_that_cannot_be_planned_gets_one_unscored_result_everywhere(tmp_path, monkeypatch, capsys):
    from mediqa.cli.main import main

    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4), export / "a")

    def absurd(records):
        raise SeriesError("PixelSpacing is 0: the slices cannot be measured")

    monkeypatch.setattr(pipeline, "plan_series", absurd)
    stream = io.StringIO()
    a = agent(state, export, clock, on_result=ConsoleReporter("never", stream))
    settle(a, clock)
    (line,) = stream.getvalue().splitlines()
    assert "n/a" in line and "PixelSpacing is 0" in line and "nan" not in line
    (row,) = jsonl(state)
    assert row["decision"] == "unscored" and row["score"] is None
    assert row["reasons"] == ["PixelSpacing is 0: the slices cannot be measured"]
    assert row["instances"] == 4
    (live,) = a.store.live()
    assert live["decision"] == "unscored"
    capsys.readouterr()
    assert main(["alerts", "--all", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "UNSCORED" in out and "PixelSpacing is 0" in out


def test_a_series_whose_every_file_is_skipped_is_reported_once_as_skipped(tmp_path, monkeypatch):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4, seed=1), export / "a")
    loc = copy(make_series(tmp_path, "loc", 3, seed=2), export / "loc")
    loc_uid = series_uid(loc[0])
    real = service.read_header

    def localizers(path, **kw):
        if path in loc:
            raise DicomSkip("localizer", "ImageType marks a localizer/scout", series_uid=loc_uid)
        return real(path, **kw)

    monkeypatch.setattr(service, "read_header", localizers)
    results: list = []
    first = agent(state, export, clock, results)
    settle(first, clock)
    skipped = [r for r in results if r.series_uid == loc_uid]
    assert len(results) == 2 and len(skipped) == 1
    assert skipped[0].decision == "skipped" and "localizer" in skipped[0].reasons[0]
    assert "skipped" in format_line(skipped[0])
    second = agent(state, export, clock, results)
    second.reconcile()
    settle(second, clock)
    assert len(results) == 2
    assert sorted(x["decision"] for x in jsonl(state)) == ["ok", "skipped"]


def test_an_unreadable_instance_is_counted_and_shown_on_the_console_line(tmp_path, monkeypatch):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    paths = copy(make_series(tmp_path, "a", 6), export / "a")
    uid = series_uid(paths[0])
    real = service.read_header

    def malformed(path, **kw):
        if path == paths[3]:
            raise DicomSkip("malformed_header", "element length past the end", series_uid=uid)
        return real(path, **kw)

    monkeypatch.setattr(service, "read_header", malformed)
    results: list = []
    settle(agent(state, export, clock, results), clock)
    (result,) = results
    assert result.n_instances == 5 and result.decision in ("ok", "retake")
    assert "5 of 6 images could be read" in result.notices
    assert "5 of 6 images could be read" in format_line(result)
    assert jsonl(state)[0]["notices"] == ["5 of 6 images could be read"]


def test_an_announced_count_that_never_arrives_is_said(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    files = make_series(tmp_path, "a", 6)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.ImagesInAcquisition = 6
        ds.save_as(f, enforce_file_format=True)
    copy(files[:5], export / "a")
    results: list = []
    settle(agent(state, export, clock, results), clock)
    (result,) = results
    assert "5 of 6 images could be read" in result.notices


def test_an_undecodable_slice_is_scored_on_the_rest_and_says_so(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    paths = copy(make_series(tmp_path, "a", 6), export / "a")
    results: list = []
    a = agent(state, export, clock, results)
    a.step()  # indexed
    st = os.stat(paths[2])
    with open(paths[2], "r+b") as fh:  # a bad sector: same size, same mtime, no longer DICOM
        fh.seek(128)
        fh.write(b"XXXX")
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns))
    settle(a, clock)
    (result,) = results
    assert result.decision in ("ok", "retake") and len(result.slice_scores) == 5
    assert any(n.startswith("1 of 6 scored slices could not be decoded") for n in result.notices)


def test_in_memory_bookkeeping_is_bounded(tmp_path, monkeypatch):
    """What the loop keeps in memory per file is capped (the database holds the rest)."""
    monkeypatch.setattr(service, "SKIPPED_KEPT", 3)
    monkeypatch.setattr(service, "FIRST_SEEN_MAX", 4)
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    export.mkdir()
    for i in range(10):
        (export / f"junk{i}.txt").write_text("not dicom")
    a = agent(state, export, clock)
    settle(a, clock)
    assert len(a.skipped) == 3 and len(a._first_seen) <= 4
    assert not a.settler and not a._unsaved
    assert all(a.tracker.file_row(str(export / f"junk{i}.txt"))[2] == "skipped" for i in range(10))
