"""What the agent lets out: no file or folder name in a log line or traceback, no control character on the
console, private state files, and no output of its own inside the export folder."""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
import time

import pydicom
import pytest
from test_reliability_support import Clock, agent, config, copy, make_series, settle

import mediqa.agent.service as service
from mediqa.agent.report.console import ConsoleReporter
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.errors import ConfigError

NAME = "DOE^JOHN_12345"


def test_files_reach_the_log_only_as_keys(tmp_path, monkeypatch, caplog):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    folder = export / NAME
    paths = copy(make_series(tmp_path, "a", 4), folder, [f"{NAME}_IM{i}.dcm" for i in range(4)])
    (folder / f"{NAME}_notes.txt").write_text("not dicom")
    real = service.read_header

    def buggy(path, **kw):
        if path == paths[1]:
            raise ValueError(f"cannot parse {path}")
        return real(path, **kw)

    monkeypatch.setattr(service, "read_header", buggy)
    caplog.set_level(logging.DEBUG)
    a = agent(state, export, clock)
    settle(a, clock)
    text = caplog.text
    assert "f-" in text  # the skipped files are named, by key
    assert "DOE" not in text and "JOHN" not in text


@pytest.mark.slow
def test_tracebacks_logged_while_the_agent_runs_carry_no_export_path(tmp_path, monkeypatch, caplog):
    export, state = tmp_path / "export", tmp_path / "state"
    paths = copy(make_series(tmp_path, "a", 4), export / NAME)

    scrubbed: list[bool] = []

    def failing(records, *a, **kw):
        scrubbed.append(any(isinstance(f, service.PathScrubber) for h in logging.getLogger().handlers
                            for f in h.filters))
        raise OSError(5, "Input/output error", paths[0])

    monkeypatch.setattr(service, "analyse_series", failing)
    caplog.set_level(logging.INFO)
    results: list = []
    a = Agent(config(state), ClassicalScorer(), export, on_result=lambda r, i: results.append(r))
    stop = threading.Event()
    loop = threading.Thread(target=a.run, args=(stop,), kwargs={"watch": False, "tick_s": 0.05})
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while not results and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert results and results[0].decision == "unscored"
    assert scrubbed == [True]  # installed on the root logger's handlers while the agent runs
    assert "Traceback" in caplog.text and "OSError" in caplog.text
    assert NAME not in caplog.text and str(export) not in caplog.text
    assert not any(isinstance(f, service.PathScrubber) for h in logging.getLogger().handlers for f in h.filters)


def test_header_text_on_the_console_is_one_clean_line(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    files = make_series(tmp_path, "a", 4)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SeriesDescription = "\x1b[2K\rFAKE OK\n"
        ds.save_as(f, enforce_file_format=True)
    copy(files, export / "a")
    stream = io.StringIO()
    settle(agent(state, export, clock, on_result=ConsoleReporter("never", stream)), clock)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert "\x1b" not in out and "\r" not in out and "FAKE OK" in out


def test_state_files_are_private(tmp_path):
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    copy(make_series(tmp_path, "a", 4), export / "a")
    settle(agent(state, export, clock), clock)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in ("state.sqlite", "results.jsonl"):
        assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600, name


@pytest.mark.parametrize("key", ["report.jsonl", "scoring.engine_cache"])
def test_outputs_inside_the_export_folder_are_refused(tmp_path, key):
    export = tmp_path / "export"
    export.mkdir()
    section, name = key.split(".")
    cfg = config(tmp_path / "state", **{section: {name: str(export / "sub" / "out")}})
    with pytest.raises(ConfigError, match="inside the export folder"):
        Agent(cfg, ClassicalScorer(), export)


def test_the_export_folder_is_only_read(tmp_path, monkeypatch):
    """Poison files, unscored series, rewrites, restarts: nothing in the export folder changes."""
    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    paths = copy(make_series(tmp_path, "a", 5), export / "a")
    copy(make_series(tmp_path, "b", 4, seed=3), export / "b")
    (export / "junk.txt").write_text("not dicom")
    (export / "empty.dcm").write_bytes(b"")
    real = service.read_header

    def buggy(path, **kw):
        if path == paths[0]:
            raise RuntimeError("a bug")
        return real(path, **kw)

    monkeypatch.setattr(service, "read_header", buggy)

    def snapshot() -> dict[str, tuple[int, int, int]]:
        return {str(p.relative_to(export)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
                for p in sorted(export.rglob("*"))}

    before = snapshot()
    for _ in range(2):
        a = agent(state, export, clock)
        a.reconcile()
        settle(a, clock)
        a.close()
    assert snapshot() == before
