"""``/events``: server-sent events, so a card appears the moment its result is committed, and none is lost.

Every result is an event whose ``id:`` is the result's row id. The browser keeps the last id and sends it
back (``Last-Event-ID``) when it reconnects after a network blip or a restart of the agent or the
console; the stream then starts with every result after it, oldest first, so nothing is missed and
nothing is sent twice. A page whose EventSource gave up reconnects itself with ``?after=<id>``. A first
connection gets the newest live results (``backlog: true``: no sound for those). A page ahead of the
database (the agent started a new state file) is told to ``reset`` and gets the backlog. Results older
than ``alerts.max_age_h`` are in neither (they are history); each card's ``live_until`` tells an open
page when to drop it.

The stream wakes when the agent says a result was committed (``Beacon.bump`` through
``ConsoleServer.notify``) or, from another process, within ``poll_s`` by reading the database. A
``status`` event every ``heartbeat_s`` carries the status strip and proves the agent is there; a
``: keep-alive`` comment is written in between so proxies and sockets do not idle out.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from mediqa.agent.report.web.reader import Row, StateReader, StateUnavailable

BACKLOG = 100
BATCH = 200
RETRY_MS = 1000


class Beacon:
    """A counter that wakes every waiting stream when it moves (cheap for the agent's thread to bump)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._n = 0

    def bump(self) -> None:
        with self._cond:
            self._n += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            if self._n == seen:
                self._cond.wait(timeout)
            return self._n


class EventSourceApp(Protocol):
    reader: StateReader
    beacon: Beacon
    stopping: threading.Event
    heartbeat_s: float
    poll_s: float

    def cards(self, rows: list[Row]) -> list[dict[str, Any]]: ...
    def status_json(self) -> dict[str, Any]: ...
    def live_since(self) -> float | None: ...


def frame(data: Any, event: str | None = None, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), allow_nan=False))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def resume_point(last_event_id: str | None, after: str | None) -> int | None:
    """The id a page has seen: ``Last-Event-ID`` (the browser's), else ``?after=`` (the page's own)."""
    for value in (last_event_id, after):
        if value is not None and value.strip().isdigit():
            return int(value.strip())
    return None


def stream(app: EventSourceApp, write: Callable[[bytes], None], last: int | None) -> None:
    """Write events until the console stops or the client goes away (``write`` raises ``OSError``)."""
    write(f"retry: {RETRY_MS}\n: mediqa console\n\n".encode())
    seen_beacon = app.beacon.wait(-1, 0)
    fb_head: int | None = None
    pos = -1
    beat = alive = time.monotonic()
    write(frame(app.status_json(), "status"))
    while not app.stopping.is_set():
        try:
            if fb_head is None:  # the first read (again, while the database cannot be read)
                pos, fb_head = _start(app, write, last)
            rows = app.reader.after(pos, BATCH, since=app.live_since())
            answers = app.reader.feedback_after(fb_head)
        except StateUnavailable:
            rows, answers = [], []
        for card in app.cards(rows):
            write(frame(card, "result", card["id"]))
        if rows:
            pos = max(int(r["result_id"]) for r in rows)
            if len(rows) == BATCH:
                continue  # more to catch up on
        if answers and fb_head is not None:
            fb_head = max(a.id for a in answers)
            for card in app.cards(_rows_for(app, sorted({a.result_id for a in answers}))):
                write(frame(card, "update"))  # no id: an update never moves the resume point
        now = time.monotonic()
        if now - beat >= app.heartbeat_s:
            write(frame(app.status_json(), "status"))
            beat = alive = now
        elif now - alive >= max(1.0, app.heartbeat_s / 2):
            write(b": keep-alive\n\n")
            alive = now
        seen_beacon = app.beacon.wait(seen_beacon, app.poll_s)


def _start(app: EventSourceApp, write: Callable[[bytes], None], last: int | None) -> tuple[int, int]:
    """Where this stream starts: after the page's last id, or after a backlog of the newest live results."""
    head, fb_head = app.reader.head()
    if last is not None and last > head:
        write(frame({"reason": "the agent started a new state database"}, "reset"))
        last = None
    if last is None:
        for card in app.cards(app.reader.recent(BACKLOG, upto=head, since=app.live_since()) if head else []):
            card["backlog"] = True
            write(frame(card, "result", card["id"]))
        last = head
    return last, fb_head


def _rows_for(app: EventSourceApp, ids: list[int]) -> list[Row]:
    out = []
    for rid in ids[:50]:
        row = app.reader.get(str(rid))
        if row is not None:
            out.append(row)
    return out
