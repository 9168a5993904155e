"""Old series at the agent's first start are history: stored and listed, never an alert (``alerts.max_age_h``).

The real service (``Runtime``: the agent loop, the console line, the notifier, the SR outbox) starts on a
fresh state dir beside an export folder that already holds a clean and a noisy phantom CT whose files were
written 8 hours ago, and a noisy one written now. The destination is a local JSON webhook on 127.0.0.1.
The two old series must be scored and stored as history, with nothing raised for either; the new noisy one
is the control: it must alert exactly as before (card, console line, WARNING, notification, SR).
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mediqa.agent.config import config_from_dict
from mediqa.agent.pipeline import unscored_result
from mediqa.agent.report.console import ConsoleReporter
from mediqa.agent.report.store import ResultStore
from mediqa.agent.report.web.reader import HistoryFilter, StateReader
from mediqa.agent.runtime import Runtime
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.state.db import STATE_FILE, open_state

HOURS = 3600.0


class _Hook(http.server.BaseHTTPRequestHandler):
    posts: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _written_ago(folder: Path, seconds: float) -> None:
    """Every file of ``folder`` as if the scanner had written it ``seconds`` ago."""
    when = time.time() - seconds
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))


def _wait(what: Callable[[], Any], deadline_s: float = 60.0) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.mark.slow  # three series through the whole service, ~5 s on 2 cores
def test_old_series_at_first_start_are_history_and_raise_nothing(tmp_path, caplog):
    export = tmp_path / "export"
    write_phantom_ct(export / "old-clean", noise_hu=4.0, seed=0, slices=6, size=96)
    write_phantom_ct(export / "old-noisy", noise_hu=60.0, seed=1, slices=6, size=96)
    write_phantom_ct(export / "new-noisy", noise_hu=60.0, seed=2, slices=6, size=96)
    for old in ("old-clean", "old-noisy"):
        _written_ago(export / old, 8 * HOURS)
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.posts = []
    state = tmp_path / "state"
    cfg = config_from_dict({
        "state_dir": str(state), "scoring": {"scorer": "classical"}, "console": {"listen": "off"},
        "completion": {"quiet_period_s": {"default": 0.5, "CT": 0.5}}, "watch": {"file_stable_s": 0.0},
        "notify": {"destinations": [f"json://127.0.0.1:{hook.server_address[1]}/hook"], "backoff_s": 0.2},
        "alerts": {"max_age_h": 6.0}})
    lines = io.StringIO()
    caplog.set_level(logging.INFO)
    runtime = Runtime(cfg, ClassicalScorer(), export, sinks=[ConsoleReporter("never", lines, journal=False)])
    stop = threading.Event()
    loop = threading.Thread(target=runtime.run, args=(stop,))
    loop.start()
    try:
        db = runtime.agent.db
        _wait(lambda: db.query_one("SELECT COUNT(*) FROM results")[0] == 3)
        _wait(lambda: _Hook.posts)  # the new retake's notification
        _wait(lambda: db.query_one("SELECT COUNT(*) FROM sr_outbox")[0] >= 1)  # the SR worker has run
        time.sleep(1.0)  # anything else queued would be delivered now
        rows = db.query("SELECT r.origin, r.decision, (SELECT COUNT(*) FROM notifications n WHERE n.result_uuid="
                        "r.uuid), (SELECT COUNT(*) FROM sr_outbox o WHERE o.result_uuid=r.uuid) FROM results r "
                        "ORDER BY r.decision, r.origin")
    finally:
        stop.set()
        loop.join(30)
        runtime.close()
        hook.shutdown()
        hook.server_close()

    # stored: as history for the old ones (no notification, no SR), as news for the new one
    assert sorted(map(tuple, rows)) == [("history", "ok", 0, 0), ("history", "retake", 0, 0),
                                        ("scored", "retake", 1, 1)]
    assert len(_Hook.posts) == 1
    assert len((state / "results.jsonl").read_text().splitlines()) == 3  # every result is still written
    # the console line and the WARNING: the new retake only; the old ones are one INFO line each
    assert len(lines.getvalue().splitlines()) == 1 and "RETAKE" in lines.getvalue()
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING and "RETAKE" in r.getMessage()]
    assert len(warned) == 1
    history_lines = [r.getMessage() for r in caplog.records
                     if r.levelno == logging.INFO and "scored as history" in r.getMessage()]
    assert len(history_lines) == 2 and all("8.0 h ago" in line for line in history_lines)
    # the live view shows the new retake only; history shows all three
    reader = StateReader(state / STATE_FILE)
    try:
        assert [r["decision"] for r in reader.recent()] == ["retake"]
        assert [r["decision"] for r in reader.after(0)] == ["retake"]
        assert sorted(r["origin"] for r in reader.history(HistoryFilter())) == ["history", "history", "scored"]
    finally:
        reader.close()


@pytest.mark.slow
def test_max_age_zero_turns_history_scoring_off(tmp_path):
    """The same old noisy series with ``alerts.max_age_h: 0`` alerts as it always did (the switch works)."""
    export = tmp_path / "export"
    write_phantom_ct(export / "old-noisy", noise_hu=60.0, seed=1, slices=6, size=96)
    _written_ago(export / "old-noisy", 8 * HOURS)
    cfg = config_from_dict({
        "state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"}, "console": {"listen": "off"},
        "completion": {"quiet_period_s": {"default": 0.5, "CT": 0.5}}, "watch": {"file_stable_s": 0.0},
        "alerts": {"max_age_h": 0}})
    lines = io.StringIO()
    runtime = Runtime(cfg, ClassicalScorer(), export, sinks=[ConsoleReporter("never", lines, journal=False)])
    stop = threading.Event()
    loop = threading.Thread(target=runtime.run, args=(stop,))
    loop.start()
    try:
        db = runtime.agent.db
        _wait(lambda: db.query_one("SELECT COUNT(*) FROM results")[0] == 1)
        origin = db.query_one("SELECT origin FROM results")[0]
    finally:
        stop.set()
        loop.join(30)
        runtime.close()
    assert origin == "scored" and "RETAKE" in lines.getvalue()


def test_a_database_rebuilt_from_results_jsonl_keeps_history_as_history(tmp_path):
    """The old database lost: results.jsonl brings the history back, and an old series stays no news."""
    jsonl = tmp_path / "results.jsonl"
    first = open_state(tmp_path / "a")
    try:
        store = ResultStore(first, jsonl)
        retake = unscored_result([], ["x"], decision="retake", series_uid="1.2", series_key="s-1", modality="CT")
        with first.transaction() as conn:
            store.add(conn, retake, 0, history=True)
            store.add(conn, unscored_result([], ["y"], series_uid="1.3", series_key="s-2", modality="CT"), 0)
        assert store.flush_jsonl() == 2
    finally:
        first.close()
    rebuilt = open_state(tmp_path / "b")
    try:
        store = ResultStore(rebuilt, jsonl)
        assert store.seed_from_jsonl() == 2
        assert [r["origin"] for r in store.history()] == ["history", "jsonl"]
        assert [r["series_uid"] for r in store.live("retake", since=0.0)] == []  # never reminded again
        assert all("history" not in r for r in store.history())  # a row field, not part of the result
    finally:
        rebuilt.close()
