"""End to end: replay real series into a folder; the agent scores each once, survives bad files
and restarts, and never touches the export folder."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from test_reliability_support import always_retake

from mediqa.agent.config import config_from_dict
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.cli.replay import replay

SERIES = ("dcm_qa_ct/In/Philips/S21570/S2010", "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag")


def _config(state: Path, **extra):
    raw = {"state_dir": str(state), "completion": {"quiet_period_s": {"default": 1.0}},
           "watch": {"file_stable_s": 0.0, "reconcile_interval_s": 3600.0}, "scoring": {"scorer": "classical"}}
    raw.update(extra)
    return config_from_dict(raw)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow
def test_replay_then_scan_scores_every_series_once(tmp_path, shared_dicom):
    export = tmp_path / "export"
    for i, rel in enumerate(SERIES):
        replay(shared_dicom / rel, export / f"s{i}", rate=0)
    (export / "junk.txt").write_text("not dicom")
    (export / "empty.dcm").write_bytes(b"")
    before = _snapshot(export)
    clock = Clock()
    seen = []
    agent = Agent(_config(tmp_path / "state"), ClassicalScorer(), export, clock=clock,
                  on_result=lambda r, i: seen.append(r))
    agent.step()
    clock.now += 2
    agent.step()
    assert sorted(r.n_instances for r in seen) == [28, 35]
    assert {r.modality for r in seen} == {"CT", "MR"}
    assert agent.skipped[str(export / "junk.txt")] == "not_dicom"
    # Nothing more to do: a second pass or a rescan scores nothing again.
    clock.now += 100
    agent.reconcile()
    assert agent.step() == []
    assert _snapshot(export) == before  # the export folder was only read
    lines = (tmp_path / "state" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len({json.loads(x)["series_uid"] for x in lines}) == 2


@pytest.mark.slow
def test_restart_neither_loses_nor_duplicates(tmp_path, shared_dicom):
    export = tmp_path / "export"
    replay(shared_dicom / SERIES[0], export / "a", rate=0)
    clock = Clock()
    cfg = _config(tmp_path / "state")
    first = Agent(cfg, ClassicalScorer(), export, clock=clock)
    first.step()  # indexed, not yet complete: "crash" here
    replay(shared_dicom / SERIES[1], export / "b", rate=0)  # arrives while the agent is down
    clock.now += 2
    results = []
    second = Agent(cfg, ClassicalScorer(), export, clock=clock, on_result=lambda r, i: results.append(r))
    second.step()
    clock.now += 2
    second.step()
    assert sorted(r.n_instances for r in results) == [28, 35]
    third = Agent(cfg, ClassicalScorer(), export, clock=clock, on_result=lambda r, i: results.append(r))
    clock.now += 5
    third.step()
    assert len(results) == 2
    assert len((tmp_path / "state" / "results.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_late_instance_supersedes_result(tmp_path, shared_dicom):
    export = tmp_path / "export"
    src = shared_dicom / SERIES[0]
    files = sorted(p for p in src.iterdir() if p.name != "DIRFILE")
    (export / "a").mkdir(parents=True)
    for f in files[:-1]:
        (export / "a" / f.name).write_bytes(f.read_bytes())
    clock = Clock()
    agent = Agent(_config(tmp_path / "state"), ClassicalScorer(), export, clock=clock)
    agent.step()
    clock.now += 2
    assert len(agent.step()) == 1
    (export / "a" / files[-1].name).write_bytes(files[-1].read_bytes())
    agent.reconcile()
    agent.step()
    clock.now += 2
    (late,) = agent.step()
    assert late.n_instances == 28
    live = agent.store.live()
    assert len(live) == 1 and live[0]["instances"] == 28
    assert len(agent.store.history()) == 2


def test_half_written_file_waits_and_permission_denied_is_skipped(tmp_path, shared_dicom, monkeypatch):
    import builtins

    import mediqa.agent.dicom.index as index

    export = tmp_path / "export"
    export.mkdir()
    data = (shared_dicom / "dcm_qa_ct/In/GE/01.dcm").read_bytes()
    half = export / "01.dcm"
    half.write_bytes(data[: len(data) // 2])
    locked = export / "02.dcm"
    locked.write_bytes((shared_dicom / "dcm_qa_ct/In/GE/02.dcm").read_bytes())
    real_open = builtins.open

    def guarded_open(path, *a, **kw):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(index, "open", guarded_open, raising=False)
    clock = Clock()
    agent = Agent(_config(tmp_path / "state"), ClassicalScorer(), export, clock=clock)
    agent.step()
    assert agent.skipped == {str(locked): "permission_denied"}
    assert agent.tracker.all_states() == []  # the half file is pending, not indexed
    half.write_bytes(data)
    os.utime(half, ns=(time.time_ns(), time.time_ns() + 1000))
    clock.now += 1
    agent.reconcile()
    agent.step()
    agent.step()
    assert [s.instances for s in agent.tracker.all_states()] == [1]


def test_state_dir_inside_export_folder_is_refused(tmp_path):
    from mediqa.errors import ConfigError

    with pytest.raises(ConfigError, match="inside the export folder"):
        Agent(_config(tmp_path / "export" / "state"), ClassicalScorer(), tmp_path / "export")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["native", "polling"])
def test_watch_mode_sees_replayed_series(tmp_path, shared_dicom, mode):
    export = tmp_path / "export"
    export.mkdir()
    results = []
    cfg = _config(tmp_path / "state", watch={"file_stable_s": 0.0, "reconcile_interval_s": 3600.0, "mode": mode,
                                             "poll_interval_s": 0.2})
    agent = Agent(cfg, ClassicalScorer(), export, on_result=lambda r, i: results.append(r))
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), kwargs={"watch": True, "tick_s": 0.05})
    loop.start()
    try:
        replay(shared_dicom / SERIES[0], export / "new" / "nested", rate=500)
        deadline = time.monotonic() + 20
        while not results and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert len(results) == 1 and results[0].n_instances == 28


@pytest.mark.slow
def test_logs_and_console_carry_no_patient_identifiers(tmp_path, shared_dicom, caplog, capsys):
    import logging

    import pydicom

    from mediqa.agent.report.console import ConsoleReporter

    src = shared_dicom / "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag"
    first = pydicom.dcmread(next(src.iterdir()), stop_before_pixels=True)
    secrets = {str(first.get(k, "")) for k in ("PatientName", "PatientID", "SeriesInstanceUID", "StudyInstanceUID")}
    secrets = {s for s in secrets if len(s) > 3}
    assert secrets
    export = tmp_path / "export"
    replay(src, export / "x", rate=0)
    clock = Clock()
    caplog.set_level(logging.DEBUG)
    cfg = always_retake(_config(tmp_path / "state"))  # force a WARNING alert
    agent = Agent(cfg, ClassicalScorer(), export, clock=clock, on_result=ConsoleReporter("never"))
    agent.step()
    clock.now += 2
    (result,) = agent.step()
    assert result.decision == "retake"
    text = caplog.text + capsys.readouterr().out
    assert "RETAKE" in text
    for secret in secrets:
        assert secret not in text


@pytest.mark.slow
def test_alerts_listed_acknowledged_and_reminded_after_restart(tmp_path, shared_dicom, capsys):
    import io

    from mediqa.agent.report.console import ConsoleReporter
    from mediqa.cli.main import main

    export = tmp_path / "export"
    replay(shared_dicom / SERIES[0], export / "a", rate=0)
    clock = Clock()
    cfg = always_retake(_config(tmp_path / "state"))
    agent = Agent(cfg, ClassicalScorer(), export, clock=clock)
    agent.step()
    clock.now += 2
    (result,) = agent.step()
    assert result.decision == "retake"
    # After a restart the reporter reminds of the open alert, once per start.
    again = Agent(cfg, ClassicalScorer(), export, clock=clock)
    stream = io.StringIO()
    assert ConsoleReporter("never", stream).remind(again.store.live("retake")) == 1
    assert "unacknowledged RETAKE" in stream.getvalue()
    # the fake clock dates these results 1970: with no alerts.max_age_h every live alert is listed
    state = ["--state-dir", str(tmp_path / "state"), "--set", "alerts.max_age_h=0"]
    assert main(["alerts", *state]) == 0
    listed = capsys.readouterr().out
    rid = int(listed.split("]")[0].strip("[ "))
    assert "RETAKE" in listed
    assert main(["alerts", "--ack", str(rid), *state]) == 0
    assert main(["alerts", "--ack", str(rid), *state]) == 1  # only once
    capsys.readouterr()
    assert main(["alerts", *state]) == 0
    assert "no live retake alerts" in capsys.readouterr().out
    assert ConsoleReporter("never", io.StringIO()).remind(again.store.live("retake")) == 0


def test_files_inside_their_quiet_window_are_not_stat_again(tmp_path, shared_dicom, monkeypatch):
    export = tmp_path / "export"
    replay(shared_dicom / SERIES[0], export / "a", rate=0)
    clock = Clock()
    agent = Agent(_config(tmp_path / "state", watch={"file_stable_s": 5.0, "reconcile_interval_s": 3600.0}),
                  ClassicalScorer(), export, clock=clock)
    agent.reconcile()
    n = len(agent.settler)
    assert n >= 28
    import mediqa.agent.service as service

    calls = []
    real_stat = os.stat
    monkeypatch.setattr(service.os, "stat", lambda p, *a, **k: calls.append(p) or real_stat(p, *a, **k))
    for _ in range(3):
        clock.now += 1.0
        agent._index_ready()
    assert calls == [] and len(agent.settler) == n  # still quiet: nothing to look at yet
    clock.now += 3.0
    agent._index_ready()
    assert len(calls) >= n and not agent.settler  # window over: each file stat'ed and indexed (or skipped)
