"""What the technologist said about a result: "rescanned", "accepted as is", "false alert", "should have alerted".

An alert nobody answers teaches nothing. Every answer is a row of the ``feedback`` table of the state
database (several per result are kept: the history of who said what and when), written through the
``StateDB``'s own ``transaction()`` so the agent's one-writer rule holds. The table is created here with
``CREATE TABLE IF NOT EXISTS`` (it is not part of the versioned schema of ``agent/state/db.py``: a state
file without it is simply one where nobody gave feedback yet), so readers must expect it to be missing.

An answer that closes an alert ("rescanned", "accepted", "false alert", "seen") also sets the result's
``acknowledged_at`` / ``acknowledged_by`` in the same transaction, exactly as ``ResultStore.acknowledge``
does, so ``mediqa alerts`` and the reminder at start agree with the page. The web console and
``mediqa alerts --ack`` both call ``record_feedback``. Notes are free text typed by people and may hold
anything: they are stored, shown at the console, and never logged.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mediqa.agent.report.privacy import clean_text
from mediqa.agent.state.db import StateDB
from mediqa.errors import MediqaError

FEEDBACK_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, result_id INTEGER NOT NULL, result_uuid TEXT, series_uid TEXT,
    kind TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', initials TEXT NOT NULL DEFAULT '', created REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS feedback_result ON feedback(result_id)",
)

# kind -> the words on the button and in the history
KINDS: Mapping[str, str] = {
    "rescanned": "rescanned",
    "accepted": "accepted as is",
    "false_alert": "false alert",
    "should_have_alerted": "should have alerted",
    "seen": "seen",
}
# The answers that fit each verdict (a retake is answered, an ok series can only be flagged as missed); the
# page offers exactly these. A bare acknowledgement without an answer is ``ResultStore.acknowledge``'s.
ALLOWED: Mapping[str, tuple[str, ...]] = {
    "retake": ("rescanned", "accepted", "false_alert"),
    "ok": ("should_have_alerted",),
    "unscored": ("seen", "rescanned", "should_have_alerted"),
    "skipped": ("seen", "should_have_alerted"),
}
BUTTONS = ALLOWED
ACKNOWLEDGING = frozenset({"rescanned", "accepted", "false_alert", "seen"})
NOTE_MAX, INITIALS_MAX = 500, 8


class FeedbackError(MediqaError):
    """Feedback that cannot be recorded: no such result, or an answer that does not fit its verdict."""


@dataclass(frozen=True)
class Feedback:
    id: int
    result_id: int
    result_uuid: str | None
    series_uid: str | None
    kind: str
    note: str
    initials: str
    created: float

    @property
    def label(self) -> str:
        return KINDS.get(self.kind, self.kind)

    def to_json(self, *, with_series_uid: bool = False) -> dict[str, Any]:
        """For the page: the series UID is an identifier and stays in the database unless asked for."""
        out = asdict(self)
        out["label"] = self.label
        if not with_series_uid:
            out.pop("series_uid")
        return out


def kinds_for(decision: str) -> tuple[str, ...]:
    """The answers accepted for a result of ``decision``."""
    return ALLOWED.get(decision, ("seen",))


def buttons_for(decision: str) -> tuple[str, ...]:
    """The answers the page offers for a result of ``decision``."""
    return BUTTONS.get(decision, ("seen",))


def ensure_table(db: StateDB) -> None:
    """Create the feedback table if this state file has none (idempotent, one transaction)."""
    with db.transaction() as conn:
        for statement in FEEDBACK_SCHEMA:
            conn.execute(statement)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})").fetchall()}


def record_feedback(db: StateDB, result_id: int, kind: str, *, note: str = "", initials: str = "",
                    clock: Callable[[], float] = time.time) -> Feedback:
    """Store one answer to result ``result_id`` and return it; raises ``FeedbackError`` when it does not fit.

    ``kind`` must be allowed for the result's decision (``ALLOWED``); an acknowledging answer also marks the
    result acknowledged (by the initials, else "console") when it was not yet.
    """
    if kind not in KINDS:
        raise FeedbackError(f"unknown feedback {kind!r}", f"one of: {', '.join(KINDS)}")
    note = clean_text(note.strip(), NOTE_MAX)
    initials = clean_text(initials.strip(), INITIALS_MAX).strip()
    now = clock()
    with db.transaction() as conn:  # one short write: the table (first time only) and the answer
        for statement in FEEDBACK_SCHEMA:
            conn.execute(statement)
        cols = _columns(conn, "results")
        fields = ["decision", *(c for c in ("uuid", "series_uid") if c in cols)]
        row = conn.execute(f"SELECT {', '.join(fields)} FROM results WHERE id=?", (int(result_id),)).fetchone()
        if row is None:
            raise FeedbackError(f"no result {result_id}", "list them with `mediqa alerts --all`")
        found = dict(zip(fields, row, strict=True))
        decision = str(found["decision"])
        if kind not in kinds_for(decision):
            allowed = ", ".join(KINDS[k] for k in kinds_for(decision))
            raise FeedbackError(f"a {decision} result cannot be answered {KINDS[kind]!r}", f"allowed: {allowed}")
        cur = conn.execute("INSERT INTO feedback (result_id, result_uuid, series_uid, kind, note, initials, created) "
                           "VALUES (?,?,?,?,?,?,?)", (int(result_id), found.get("uuid"), found.get("series_uid"),
                                                      kind, note, initials, now))
        if kind in ACKNOWLEDGING and {"acknowledged_at", "acknowledged_by"} <= cols:
            conn.execute("UPDATE results SET acknowledged_at=?, acknowledged_by=? WHERE id=? AND "
                         "acknowledged_at IS NULL", (now, initials or "console", int(result_id)))
    return Feedback(int(cur.lastrowid or 0), int(result_id), found.get("uuid"), found.get("series_uid"), kind, note,
                    initials, now)


_SELECT = "SELECT id, result_id, result_uuid, series_uid, kind, note, initials, created FROM feedback"


def _rows(source: StateDB | sqlite3.Connection, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
    try:
        if isinstance(source, StateDB):
            return source.query(sql, args)
        return source.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # nobody gave feedback on this state file yet
        raise


def _from_row(row: tuple[Any, ...]) -> Feedback:
    fid, rid, ruuid, suid, kind, note, initials, created = row
    return Feedback(int(fid), int(rid), ruuid, suid, str(kind), str(note or ""), str(initials or ""), float(created))


def feedback_for(db: StateDB | sqlite3.Connection, result_ids: Iterable[int]) -> dict[int, list[Feedback]]:
    """The answers to each of ``result_ids``, oldest first (results without any are absent).

    Takes the agent's ``StateDB`` or any open connection (the console's read-only one).
    """
    ids = sorted({int(i) for i in result_ids})
    out: dict[int, list[Feedback]] = {}
    for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in _rows(db, f"{_SELECT} WHERE result_id IN ({marks}) ORDER BY id", tuple(chunk)):
            fb = _from_row(row)
            out.setdefault(fb.result_id, []).append(fb)
    return out


def feedback_after(db: StateDB | sqlite3.Connection, after_id: int, limit: int = 500) -> list[Feedback]:
    """Answers newer than feedback row ``after_id`` (the console pushes them to open pages)."""
    return [_from_row(r) for r in _rows(db, f"{_SELECT} WHERE id>? ORDER BY id LIMIT ?", (int(after_id), limit))]


def last_feedback_id(db: StateDB | sqlite3.Connection) -> int:
    rows = _rows(db, "SELECT MAX(id) FROM feedback", ())
    return int(rows[0][0] or 0) if rows else 0
