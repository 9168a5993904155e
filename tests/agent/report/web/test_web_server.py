"""The console over HTTP on 127.0.0.1: pages, API, server-sent events with resume, history and CSV."""

from __future__ import annotations

import csv
import http.client
import io
import json
import socket
import threading
import time

import pytest
from PIL import Image
from web_support import launch, request

from mediqa.agent.report.web import AgentStatus, ConsoleConfig, serve_console, start_console
from mediqa.agent.report.web.routes import CSP


def _json(server, path):
    status, _, body = request(server, "GET", path)
    assert status == 200, body
    return json.loads(body)


def test_live_page_api_and_detail_show_each_result(state, console, phantoms):
    ok_id = state.add(*phantoms["ok"])
    bad_id = state.add(*phantoms["retake"])
    status, headers, body = request(console, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == CSP and headers["x-content-type-options"] == "nosniff"
    assert b'name="csrf-token"' in body and b"/static/console.js" in body
    data = _json(console, "/api/results?after=0")
    assert [c["id"] for c in data["results"]] == [ok_id, bad_id] and data["head"] == bad_id
    ok, bad = data["results"]
    assert ok["decision"] == "ok" and ok["headline"] == "checked" and ok["score_text"] == "4.00 of 4"
    assert bad["headline"] == "RETAKE SUGGESTED" and bad["where"] == "slice 1 of 8 at 0 mm"
    assert any("image noise" in r for r in bad["reasons"]) and "score 0.00 is below 2.00" in bad["reasons"]
    assert bad["threshold_text"] == "retake below 2.00 (default)" and bad["latency_ms"] > 0 and bad["sheet"]
    assert [k for k, _ in bad["feedback_kinds"]] == ["rescanned", "accepted", "false_alert"]
    assert [k for k, _ in ok["feedback_kinds"]] == ["should_have_alerted"]
    assert phantoms["retake"][1].series_uid.encode() not in request(console, "GET", "/api/results?after=0")[2]
    detail = _json(console, f"/api/series/{bad_id}")
    assert [s["worst"] for s in detail["slices"]].count(True) == 1
    assert detail["measures"][0]["name"] == "noise_hu" and 0 <= detail["measures"][0]["bar"] <= 1
    assert detail["threshold"]["source"] == "default" and detail["scorer"] == "classical"
    assert not any(s["worst"] for s in _json(console, f"/api/series/{ok_id}")["slices"])  # only when it matters
    for ref in (str(bad_id), bad["uuid"]):
        status, _, page = request(console, "GET", f"/series/{ref}")
        assert status == 200 and b"RETAKE SUGGESTED" in page and f"/sheet/{bad_id}.png".encode() in page
    assert request(console, "GET", "/series/99999")[0] == 404


def test_sheet_and_worst_slice_thumbnail(state, console, phantoms):
    rid = state.add(*phantoms["retake"])
    status, headers, sheet = request(console, "GET", f"/sheet/{rid}.png")
    assert status == 200 and headers["content-type"] == "image/png" and sheet.startswith(b"\x89PNG")
    status, _, thumb = request(console, "GET", f"/thumb/{rid}.png")
    assert status == 200 and Image.open(io.BytesIO(thumb)).size == (224, 264)  # one tile and its caption
    unsheeted = state.add(*phantoms["ok"], sheet=False)
    assert request(console, "GET", f"/sheet/{unsheeted}.png")[0] == 404


def test_history_filters_and_csv_export(state, console, phantoms):
    state.add(*phantoms["ok"])
    bad = state.add(*phantoms["retake"], series_description="=HYPERLINK(\"http://x\")")
    today = time.strftime("%Y-%m-%d")
    page = request(console, "GET", f"/history?day={today}&decision=retake")[2].decode()
    assert f'href="/series/{bad}"' in page and page.count('<tr class="row-') == 1
    assert request(console, "GET", "/history?day=2001-01-01")[2].count(b'<tr class="row-') == 0
    status, headers, body = request(console, "GET", "/history.csv")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert [r["decision"] for r in rows] == ["retake", "ok"]
    assert rows[0]["description"].startswith("'=")  # a spreadsheet must not run it as a formula
    assert rows[0]["where"] == "slice 1 of 8 at 0 mm" and rows[0]["score"] == "0.00"


def _events(server, headers=None, path="/events", want=1, timeout=5.0, on_open=None):
    """Read server-sent events until ``want`` result events (or ``timeout``); returns every event."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request("GET", path, headers={"Host": f"127.0.0.1:{server.port}", **(headers or {})})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    if on_open:
        on_open()
    events, cur, deadline = [], {}, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and sum(e.get("event") == "result" for e in events) < want:
            raw = resp.fp.readline()
            if not raw:
                break  # the server closed the stream
            line = raw.decode().rstrip("\n")
            if not line:
                if cur:
                    events.append(cur)
                cur = {}
            elif line.startswith(":"):
                events.append({"comment": line[1:].strip()})
            else:
                key, _, value = line.partition(":")
                cur[key] = value.strip()
    finally:
        conn.close()
    return events


@pytest.mark.slow
def test_events_carry_ids_and_resume_after_the_last_id(state, phantoms):
    first = [state.add(*phantoms["ok"]) for _ in range(3)]
    server = launch(state, heartbeat_s=0.3)
    try:
        got = _events(server, want=3)
        assert any(e.get("retry") == "1000" for e in got)  # the browser reconnects after 1 s
        results = [e for e in got if e.get("event") == "result"]
        assert [int(e["id"]) for e in results] == first and all(json.loads(e["data"])["backlog"] for e in results)
        added = []
        late = _events(server, headers={"Last-Event-ID": str(first[0])}, want=3,
                       on_open=lambda: added.append(state.add(*phantoms["retake"])))
        ids = [int(e["id"]) for e in late if e.get("event") == "result"]
        assert ids == [*first[1:], *added]  # everything after the last id seen, once, in order
        assert not any("backlog" in json.loads(e["data"]) for e in late if e.get("event") == "result")
        assert [int(e["id"]) for e in _events(server, path=f"/events?after={first[1]}", want=2)
                if e.get("event") == "result"] == [first[2], *added]
        ahead = _events(server, headers={"Last-Event-ID": "9999"}, want=4)
        kinds = [e["event"] for e in ahead if e.get("event") in ("reset", "result")]
        assert kinds == ["reset", "result", "result", "result", "result"]  # a page ahead of the database starts again
        quiet = _events(server, headers={"Last-Event-ID": str(added[-1])}, want=1, timeout=1.5)
        assert any(e.get("event") == "status" for e in quiet) and any("comment" in e for e in quiet)
    finally:
        server.stop()


@pytest.mark.slow
def test_the_stream_leaves_out_results_older_than_the_max_age(state, phantoms):
    old = state.add(*phantoms["retake"])
    with state.db.transaction() as conn:  # an alert nobody answered, committed 7 h ago
        conn.execute("UPDATE results SET created=created-? WHERE id=?", (7 * 3600.0, old))
    fresh = state.add(*phantoms["ok"])
    server = launch(state, heartbeat_s=0.3, live_max_age_s=6 * 3600.0)
    try:
        for headers in (None, {"Last-Event-ID": "0"}):  # a new page (the backlog), a page resuming from the start
            got = [e for e in _events(server, headers=headers, want=2, timeout=1.0) if e.get("event") == "result"]
            assert [int(e["id"]) for e in got] == [fresh]
            assert json.loads(got[0]["data"])["live_until"] > time.time() + 5 * 3600.0
        status, _, body = request(server, "GET", f"/series/{old}")
        assert status == 200 and b"RETAKE" in body  # still in history, its detail still opens
    finally:
        server.stop()


@pytest.mark.slow
def test_healthz_reports_the_providers_reasons(state, phantoms):
    reasons = []
    server = launch(state, status=lambda: AgentStatus(folder="export", backend="numpy", reasons=tuple(reasons)))
    try:
        assert request(server, "GET", "/healthz")[:3:2] == (200, b'{"status":"ok"}')
        reasons.append("the export folder cannot be read")
        time.sleep(1.1)  # the status is cached for a second
        status, _, body = request(server, "GET", "/healthz")
        assert status == 503 and json.loads(body) == {"status": "degraded", "reasons": reasons}
        st = _json(server, "/api/status")
        assert st["folder"] == "export" and st["degraded"] and st["in_process"]
    finally:
        server.stop()
    broken = launch(state, status=lambda: 1 / 0)
    try:
        status, _, body = request(broken, "GET", "/healthz")
        assert status == 503 and "agent status unavailable (ZeroDivisionError)" in json.loads(body)["reasons"]
    finally:
        broken.stop()


def test_a_failing_handler_is_a_500_and_the_console_goes_on(state, console, phantoms, monkeypatch, caplog):
    rid = state.add(*phantoms["retake"], series_description="SECRET^NAME")

    def boom(row):
        raise ValueError(row["series_description"])

    monkeypatch.setattr(console.app, "detail", boom)
    assert request(console, "GET", f"/series/{rid}")[0] == 500
    assert "ValueError" in caplog.text and "SECRET" not in caplog.text  # the type, never the message
    assert request(console, "GET", "/api/status")[0] == 200


def test_stop_ends_streams_and_idle_connections(state, phantoms):
    state.add(*phantoms["ok"])
    server = launch(state)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # a browser's pre-opened socket
    stream = threading.Thread(target=_events, args=(server,), kwargs={"want": 5, "timeout": 20})
    stream.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    stream.join(5)
    assert not stream.is_alive() and time.monotonic() - started < 3
    idle.close()
    again = launch(state, cfg=ConsoleConfig(listen=f"127.0.0.1:{server.port}"))  # the port is free again
    try:
        assert request(again, "GET", "/healthz")[0] == 200
    finally:
        again.stop()


def test_serve_console_runs_apart_from_the_agent(state, phantoms, tmp_path):
    rid = state.add(*phantoms["retake"])

    class Config:  # what serve_console reads of an AgentConfig
        console = ConsoleConfig(listen="127.0.0.1:0")
        state_path = state.path
        scoring = None

    stop, ready = threading.Event(), []
    runner = threading.Thread(target=lambda: ready.append(serve_console(Config(), stop=stop, on_ready=ready.append)))
    runner.start()
    try:
        for _ in range(100):
            if ready:
                break
            time.sleep(0.05)
        server = ready[0]
        st = _json(server, "/api/status")
        assert st["in_process"] is False and st["degraded"] is False
        assert _json(server, "/api/results?after=0")["results"][0]["id"] == rid
    finally:
        stop.set()
        runner.join(10)
    assert ready[-1] == 0


def test_a_console_that_cannot_start_never_stops_the_agent(state, console, caplog):
    assert start_console(ConsoleConfig(listen="off"), state.path) is None
    assert start_console(ConsoleConfig(listen=f"127.0.0.1:{console.port}"), state.path) is None  # port taken
    assert "cannot listen" in caplog.text and "the agent runs on without it" in caplog.text
    console.stop()
    console.notify(1)  # after the end too: the agent's thread never notices the console


def test_the_agent_configs_console_block_matches_this_one():
    """``AgentConfig.console`` is a copy of ``ConsoleConfig`` (agent/config.py cannot import it): same fields."""
    import dataclasses

    from mediqa.agent.config import AgentConfig

    fields = {f.name: f for f in dataclasses.fields(AgentConfig)}
    if "console" not in fields:
        pytest.skip("AgentConfig has no console block yet (the service owner adds it)")
    theirs = AgentConfig().console
    assert {f.name: getattr(theirs, f.name) for f in dataclasses.fields(theirs)} == \
        dataclasses.asdict(ConsoleConfig())


def test_feedback_when_the_database_refuses_writes_is_a_503_to_try_again(state, console, phantoms, monkeypatch):
    import sqlite3

    rid = state.add(*phantoms["retake"], sheet=False)

    def full(*args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(console.app, "record", full)
    status, _, body = request(console, "POST", "/api/feedback", {"result_id": rid, "kind": "rescanned"},
                              {"Origin": f"http://127.0.0.1:{console.port}", "X-CSRF-Token": console.app.guard.csrf})
    assert status == 503 and b"try again" in body
