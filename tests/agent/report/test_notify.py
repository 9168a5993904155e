"""Notifications of retakes: an outbox in the state DB, sent by a worker thread through apprise.

The destination is a real HTTP receiver (stdlib ``http.server`` on 127.0.0.1, in a thread) used as an
apprise ``json://`` destination; the results are real rows of a real state database. Every wait polls
with a deadline; every receiver is stopped by its fixture.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from mediqa.agent.pipeline import unscored_result
from mediqa.agent.report.notify import (
    Notifier,
    NotifyConfig,
    NotifySettings,
    destination_key,
    enqueue,
    ensure_table,
)
from mediqa.agent.report.store import ResultStore, Saved
from mediqa.agent.scoring.base import WorstSlice
from mediqa.agent.state.db import StateDB, open_state
from mediqa.errors import ConfigError

DEADLINE_S = 5.0
POLL_S = 0.02


class Receiver:
    """A JSON webhook on 127.0.0.1: records every POST; answers ``fail`` for the first ``fail_first``."""

    def __init__(self, port: int = 0, fail_first: int = 0, fail_status: int = 500, delay_s: float = 0.0) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay_s = delay_s
        self.bodies: list[dict[str, Any]] = []  # accepted deliveries
        self.times: list[float] = []  # every request, accepted or not
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver.lock:
                    receiver.times.append(time.monotonic())
                    receiver.headers.append(dict(self.headers.items()))
                    failing = len(receiver.times) <= receiver.fail_first
                    if not failing:
                        receiver.bodies.append(json.loads(data))
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(**kw: Any) -> Receiver:
        r = Receiver(**kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[tuple[StateDB, ResultStore]]:
    db = open_state(tmp_path / "state")
    yield db, ResultStore(db, tmp_path / "state" / "results.jsonl")
    db.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = what()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"not within {deadline_s} s")


def config(*urls: str, **kw: Any) -> NotifyConfig:
    return NotifyConfig(destinations=tuple(urls), **{"backoff_s": 0.05, "timeout_s": 2.0, **kw})


def add_result(db: StateDB, store: ResultStore, cfg: NotifySettings | None, decision: str = "retake",
               uid: str = "1.2.840.99.1", number: int = 3, description: str = "AX T2 FLAIR") -> Saved:
    """A result as the agent stores it, enqueued in the same transaction (the recommended wiring)."""
    base = unscored_result([], ["noise like 4% of the reference dose"] if decision == "retake" else
                           ["no usable images in series"], series_uid=uid, series_key=f"s-{uid[-4:]}",
                           modality="CT")
    result = dataclasses.replace(base, decision=decision, series_number=number, series_description=description,
                                 n_instances=28, n_slices=28)
    if decision in ("retake", "ok"):
        result = dataclasses.replace(result, score=1.42 if decision == "retake" else 3.5,
                                     worst=WorstSlice(index=11, position_mm=-40.5, score=0.9, rank=12))
    with db.transaction() as conn:
        saved = store.add(conn, result, 0, digest=f"d-{uid}-{decision}")
        if cfg is not None:
            enqueue(conn, saved, cfg)
    return saved


def rows(db: StateDB) -> list[tuple[Any, ...]]:
    return db.query("SELECT result_uuid, destination, state, attempts, last_error, sent_at FROM notifications "
                    "ORDER BY id")


def notifier(db: StateDB, cfg: NotifySettings, **kw: Any) -> Notifier:
    return Notifier(db, cfg, **{"poll_s": 0.02, **kw})


# --- one delivery per retake -----------------------------------------------------------------------

@pytest.mark.slow
def test_one_retake_is_delivered_once_and_an_ok_result_not_at_all(state, receivers):
    db, store = state
    rx = receivers()
    cfg = config(rx.url)
    retake = add_result(db, store, cfg, "retake", uid="1.2.3.1")
    add_result(db, store, cfg, "ok", uid="1.2.3.2")
    with notifier(db, cfg):
        wait_for(lambda: rx.bodies)
        wait_for(lambda: rows(db)[0][2] == "sent")
        time.sleep(0.1)  # a few more polls: nothing else goes out
    assert len(rx.bodies) == 1
    body = rx.bodies[0]
    assert body["title"] == "RETAKE #3 AX T2 FLAIR (CT)"
    assert body["type"] == "failure"
    text = body["message"]
    assert "noise like 4% of the reference dose" in text and "slice 12 of 28" in text and "1.42" in text
    assert f"mediqa alerts --ack {retake.result_id}" in text
    assert "1.2.3.1" not in json.dumps(body)  # no DICOM UID, nothing that names the patient
    (uuid_, dest, st, attempts, _err, sent_at), = rows(db)  # the ok result has no row at all
    assert (uuid_, dest, st, attempts) == (retake.uuid, destination_key(rx.url), "sent", 1) and sent_at


def test_an_unscored_series_is_sent_only_when_asked(state, receivers):
    db, store = state
    rx = receivers()
    quiet = config(rx.url)
    assert enqueue(db, add_result(db, store, None, "unscored", uid="1.2.4.1"), quiet) == 0
    loud = config(rx.url, on_unscored=True)
    saved = add_result(db, store, None, "unscored", uid="1.2.4.2", number=7, description="COR MPR")
    assert enqueue(db, saved, loud) == 1
    assert enqueue(db, saved, loud) == 0  # idempotent
    with notifier(db, loud):
        wait_for(lambda: rx.bodies)
        wait_for(lambda: rows(db)[0][2] == "sent")
    assert [b["title"] for b in rx.bodies] == ["UNSCORED #7 COR MPR (CT)"]
    assert "no usable images in series" in rx.bodies[0]["message"]


def test_a_result_superseded_before_it_was_sent_is_not_sent(state, receivers):
    db, store = state
    rx = receivers()
    cfg = config(rx.url)
    old = add_result(db, store, cfg, "retake", uid="1.2.5.1")
    add_result(db, store, cfg, "ok", uid="1.2.5.1")  # the series re-opened and scored ok: the retake is moot
    assert enqueue(db, old, cfg) == 0  # not live: nothing to queue
    with notifier(db, cfg):
        wait_for(lambda: rows(db)[0][2] == "superseded")
        time.sleep(0.1)
    assert rx.bodies == [] and rx.times == []


# --- retries ----------------------------------------------------------------------------------------

def test_a_failing_receiver_is_retried_with_backoff_until_it_accepts(state, receivers):
    db, store = state
    rx = receivers(fail_first=2)
    cfg = config(rx.url, backoff_s=0.1)
    add_result(db, store, cfg)
    with notifier(db, cfg):
        wait_for(lambda: rx.bodies)
        wait_for(lambda: rows(db)[0][2] == "sent")
    assert len(rx.times) == 3 and len(rx.bodies) == 1
    first, second = rx.times[1] - rx.times[0], rx.times[2] - rx.times[1]
    assert first >= 0.09 and second >= 0.19  # 0.1 s, then doubled
    (_, _, st, attempts, err, _), = rows(db)
    assert st == "sent" and attempts == 3 and "500" in err


def test_a_receiver_that_is_down_is_tried_until_it_is_up(state, receivers):
    db, store = state
    port = free_port()
    cfg = config(f"json://127.0.0.1:{port}/hook")
    add_result(db, store, cfg)
    with notifier(db, cfg):
        wait_for(lambda: rows(db)[0][3] >= 2)  # connection refused, twice
        assert rows(db)[0][2] in ("pending", "sending") and rows(db)[0][4]
        rx = receivers(port=port)
        wait_for(lambda: rows(db)[0][2] == "sent")
    assert len(rx.bodies) == 1


def test_after_max_attempts_a_message_fails_with_one_error_line(state, receivers, caplog):
    db, store = state
    rx = receivers(fail_first=1000)
    cfg = config(rx.url, max_attempts=3, backoff_s=0.02)
    add_result(db, store, cfg)
    caplog.set_level(logging.INFO, logger="mediqa.agent.report.notify")
    with notifier(db, cfg) as n:
        wait_for(lambda: rows(db)[0][2] == "failed")
        time.sleep(0.15)
        assert n.health() is not None and "destination 0" in n.health()
    assert len(rx.times) == 3 and rx.bodies == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("mediqa")]
    assert len(errors) == 1 and "gave up" in errors[0].getMessage()


def test_a_failing_destination_does_not_hold_up_another(state, receivers):
    db, store = state
    good, bad = receivers(), receivers(fail_first=1000)
    cfg = config(bad.url, good.url, backoff_s=0.05)
    add_result(db, store, cfg)
    with notifier(db, cfg):
        wait_for(lambda: good.bodies)
    assert len(good.bodies) == 1 and bad.bodies == []


# --- restarts ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_each_retake_is_delivered_once_across_restarts_and_re_enqueueing(state, receivers, tmp_path, caplog):
    db, store = state
    rx = receivers(delay_s=0.2)
    cfg = config(rx.url)
    saved = [add_result(db, store, cfg, uid=f"1.2.6.{i}", number=i) for i in range(1, 4)]
    first = notifier(db, cfg).start()
    wait_for(lambda: rx.bodies)
    first.stop()  # mid-way: at least one message is still waiting
    assert len(rx.bodies) < 3
    assert {r[2] for r in rows(db)} <= {"sent", "pending"}  # a stop finishes the send it is in, then stops
    db.close()
    db = open_state(tmp_path / "state")  # the agent starts again
    try:
        restarted = ResultStore(db, tmp_path / "state" / "results.jsonl")
        again = [*saved[:1], *(r for r in restarted.live("retake") if r["uuid"] != saved[0].uuid), saved[2].uuid]
        assert all(enqueue(db, s, cfg) == 0 for s in again)  # a restart that enqueues again inserts nothing
        with notifier(db, cfg):
            wait_for(lambda: len(rx.bodies) == 3 and all(r[2] == "sent" for r in rows(db)))
        with notifier(db, cfg):  # and once more: nothing left to send
            time.sleep(0.15)
        assert sorted(b["title"] for b in rx.bodies) == [f"RETAKE #{i} AX T2 FLAIR (CT)" for i in range(1, 4)]
        assert len(rows(db)) == 3
    finally:
        db.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.slow
def test_a_send_cut_by_a_crash_is_sent_again_after_its_lease_and_only_once(state, receivers):
    db, store = state
    rx = receivers()
    cfg = config(rx.url)
    add_result(db, store, cfg)
    lease_end = time.time() + 0.4  # a notifier claimed it, then the process died mid-send
    with db.transaction() as conn:
        conn.execute("UPDATE notifications SET state='sending', attempts=1, next_try=?", (lease_end,))
    with notifier(db, cfg):
        time.sleep(0.2)
        assert rx.times == []  # the lease still holds: another notifier may be sending it
        wait_for(lambda: rows(db)[0][2] == "sent")
        time.sleep(0.1)
    assert len(rx.bodies) == 1 and rows(db)[0][3] == 2


@pytest.mark.slow
def test_sending_never_holds_the_state_database(state, receivers):
    db, store = state
    rx = receivers(delay_s=0.8)  # a slow destination
    cfg = config(rx.url)
    add_result(db, store, cfg, uid="1.2.7.1")
    with notifier(db, cfg):
        wait_for(lambda: rows(db)[0][2] == "sending")
        t0 = time.monotonic()
        add_result(db, store, cfg, uid="1.2.7.2")  # the scoring side writes while the send is in flight
        assert time.monotonic() - t0 < 0.4  # not after the send's end
        assert rx.bodies == [] and len(rows(db)) == 2  # the first is still in flight; the second is queued


# --- privacy ----------------------------------------------------------------------------------------

SECRETS = ("alice", "pw-s3cr3t-x", "k3y-s3cr3t-y", "t0k3n-s3cr3t-z")


def test_credentials_in_a_destination_never_reach_logs_or_the_database(state, receivers, caplog, tmp_path):
    db, store = state
    rx = receivers(fail_first=1)
    url = f"json://alice:pw-s3cr3t-x@127.0.0.1:{rx.port}/hook/t0k3n-s3cr3t-z?+X-Api-Key=k3y-s3cr3t-y"
    caplog.set_level(logging.DEBUG)
    cfg = config(url)
    assert not any(s in repr(cfg) or s in json.dumps(cfg.redacted()) for s in SECRETS)
    assert cfg.redacted()["destinations"] == [f"json://<redacted> (destination 0, {destination_key(url)})"]
    add_result(db, store, cfg)
    with notifier(db, cfg):
        wait_for(lambda: rx.bodies)
        wait_for(lambda: rows(db)[0][2] == "sent")
    down = config(f"json://alice:pw-s3cr3t-x@127.0.0.1:{free_port()}/t0k3n-s3cr3t-z")
    add_result(db, store, down, uid="1.2.8.2")
    with notifier(db, down):
        wait_for(lambda: any(r[4] for r in rows(db)[1:]))
    with pytest.raises(ConfigError) as bad:
        NotifyConfig(destinations=(rx.url, "jsn://alice:pw-s3cr3t-x@host/t0k3n-s3cr3t-z"))
    assert "notify.destinations[1]" in str(bad.value)
    # the credentials were used...
    auth = rx.headers[-1]["Authorization"].split()[1]
    assert base64.b64decode(auth).decode() == "alice:pw-s3cr3t-x" and rx.headers[-1]["X-Api-Key"] == "k3y-s3cr3t-y"
    # ...and went nowhere else
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "Failed to send" in logged or "500" in logged  # the failure was logged, in our words
    db.close()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("state.sqlite*"))
    for secret in SECRETS:
        assert secret not in logged, secret
        assert secret.encode() not in stored, secret
        assert secret not in str(bad.value)


# --- configuration ----------------------------------------------------------------------------------

@pytest.mark.parametrize("destinations,where", [
    (("json://127.0.0.1:1/a", "nonsense://x/y"), "notify.destinations[1]"),
    (("not a url",), "notify.destinations[0]"),
    (("",), "notify.destinations[0]"),
    (("json://127.0.0.1:1/a", "json://127.0.0.1:1/a"), "notify.destinations[1]"),
    (("json://${MEDIQA_TEST_UNSET_VARIABLE}@h/x",), "notify.destinations[0]"),
])
def test_a_bad_destination_is_a_config_error_naming_its_index(destinations, where, monkeypatch):
    monkeypatch.delenv("MEDIQA_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(ConfigError) as err:
        NotifyConfig(destinations=destinations)
    assert where in str(err.value)


@pytest.mark.parametrize("field,value", [("max_attempts", 0), ("backoff_s", 0.0), ("timeout_s", -1.0)])
def test_bad_numbers_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=f"notify.{field}"):
        NotifyConfig(**{field: value})


def test_a_secret_may_come_from_the_environment(state, receivers, monkeypatch):
    db, store = state
    rx = receivers()
    monkeypatch.setenv("MEDIQA_TEST_HOOK_PASSWORD", "env-s3cr3t")
    template = f"json://bob:${{MEDIQA_TEST_HOOK_PASSWORD}}@127.0.0.1:{rx.port}/hook"
    cfg = config(template)
    add_result(db, store, cfg)
    with notifier(db, cfg):
        wait_for(lambda: rx.bodies)
    assert base64.b64decode(rx.headers[0]["Authorization"].split()[1]).decode() == "bob:env-s3cr3t"


@dataclasses.dataclass(frozen=True)
class AgentNotifyCopy:
    """As ``AgentConfig.notify`` holds it: a copy of ``NotifyConfig`` (agent/config.py cannot import it)."""

    destinations: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    on_unscored: bool = False
    max_attempts: int = 20
    backoff_s: float = 5.0
    timeout_s: float = 10.0


def test_the_agent_configs_copy_is_validated_and_accepted(state, receivers):
    db, store = state
    rx = receivers()
    with pytest.raises(ConfigError, match=r"notify\.destinations\[0\]"):
        NotifyConfig.of(AgentNotifyCopy(destinations=("nonsense://x",)))
    copy = AgentNotifyCopy(destinations=(rx.url,), backoff_s=0.05, timeout_s=2.0)
    assert NotifyConfig.of(copy) == config(rx.url)
    add_result(db, store, copy)
    with notifier(db, copy):
        wait_for(lambda: rx.bodies)


def test_no_destination_is_off(state):
    db, store = state
    cfg = NotifyConfig()
    assert enqueue(db, add_result(db, store, None), cfg) == 0
    with notifier(db, cfg) as n:
        assert not n.running
    with contextlib.suppress(sqlite3.OperationalError):  # the table need not even exist
        assert rows(db) == []


def test_the_table_is_created_once_and_idempotently(state):
    db, _ = state
    ensure_table(db)
    ensure_table(db)
    cols = [r[1] for r in db.query("PRAGMA table_info(notifications)")]
    assert cols[:3] == ["id", "result_uuid", "destination"] and "next_try" in cols and "sent_at" in cols
