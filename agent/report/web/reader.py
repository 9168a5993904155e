"""The console's own read-only view of the state database.

The page must never slow the agent down or change its state behind its back, so the console reads
through its own SQLite connection opened ``file:...?mode=ro`` (a WAL reader never blocks the writer,
and each statement is its own short read transaction, so checkpoints are not held up). Writes (feedback)
go through the agent's ``StateDB`` instead.

The results table is read defensively: its columns are looked up (``PRAGMA table_info``) and only
those present are selected, because the schema grows (``uuid``, ``supersedes``, ``origin``, ``shown_at``
arrived in version 2) and an older or newer file must still show what it has. When the agent replaces
the file (a corrupt one moved aside and rebuilt) the inode changes and the connection is reopened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediqa.agent.report.feedback import Feedback, feedback_after, feedback_for, last_feedback_id

log = logging.getLogger(__name__)

Row = dict[str, Any]
ROW_FIELDS = ("id", "uuid", "created", "live", "origin", "supersedes", "superseded_by", "acknowledged_at",
              "acknowledged_by", "decision", "modality", "score", "json")
HIDDEN_ORIGINS = ("rescored",)  # history-only rows (the same instances scored again): never a card
# Old series met at the agent's first start (``alerts.max_age_h``): in the history, never in the live view.
NOT_LIVE = (*HIDDEN_ORIGINS, "history")
# Rows restored from results.jsonl into a rebuilt database are old results, never news for an open page.
NOT_NEWS = (*NOT_LIVE, "jsonl")


class StateUnavailable(Exception):
    """The state database cannot be read now (missing, locked, damaged); the reason is the message."""


@dataclass(frozen=True)
class HistoryFilter:
    day: str = ""  # YYYY-MM-DD, local time
    modality: str = ""
    decision: str = ""
    feedback: str = ""  # a kind, "none" (no answer yet) or "any"


class StateReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._columns: frozenset[str] = frozenset()

    # --- the connection ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._close()
            raise StateUnavailable("the state database does not exist yet") from None
        except OSError as exc:
            raise StateUnavailable(f"the state database cannot be read ({exc.strerror})") from None
        inode = (st.st_dev, st.st_ino)
        if self._conn is not None and inode == self._inode:
            return self._conn
        self._close()
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            cols = frozenset(str(r[1]) for r in conn.execute("PRAGMA table_info(results)").fetchall())
        except sqlite3.Error as exc:
            raise StateUnavailable(f"the state database cannot be read ({type(exc).__name__})") from None
        self._conn, self._inode, self._columns = conn, inode, cols
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn, self._inode = None, None

    def close(self) -> None:
        with self._lock:
            self._close()

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connect()
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []  # an empty state file: the agent has not made its schema yet
                self._close()
                raise StateUnavailable(f"the state database cannot be read ({exc})") from None
            except sqlite3.Error as exc:
                self._close()
                raise StateUnavailable(f"the state database cannot be read ({type(exc).__name__})") from None

    def _with_conn(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            conn = self._connect()
            try:
                return fn(conn, *args)
            except sqlite3.Error as exc:
                self._close()
                raise StateUnavailable(f"the state database cannot be read ({type(exc).__name__})") from None

    def columns(self) -> frozenset[str]:
        with self._lock:
            self._connect()
            return self._columns

    # --- results ------------------------------------------------------------------------------------
    def _select(self, where: str = "", args: tuple[object, ...] = (), order: str = "id", limit: int = 500,
                hide: tuple[str, ...] = HIDDEN_ORIGINS) -> list[Row]:
        cols = self.columns()
        if "id" not in cols:
            return []
        fields = [c for c in ROW_FIELDS if c in cols]
        clauses = [where] if where else []
        if "origin" in cols:
            clauses.append(f"origin NOT IN ({','.join('?' * len(hide))})")
            args = (*args, *hide)
        sql = f"SELECT {', '.join(fields)} FROM results" + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
        rows = self.query(f"{sql} ORDER BY {order} LIMIT ?", (*args, int(limit)))
        return [_row(dict(zip(fields, r, strict=True))) for r in rows]

    def head(self) -> tuple[int, int]:
        """(newest result id, newest feedback id): what an open page has to catch up to."""
        rows = self.query("SELECT MAX(id) FROM results")
        last = int(rows[0][0] or 0) if rows else 0
        return last, int(self._with_conn(last_feedback_id))

    def after(self, after_id: int, limit: int = 200, since: float | None = None) -> list[Row]:
        """Results newer than ``after_id``, oldest first (what a page missed; restored history is not news).

        ``since``: only results created at or after it (``alerts.max_age_h``: older ones are history).
        """
        where = "id>?"
        args: tuple[object, ...] = (int(after_id),)
        if since is not None:
            where, args = f"{where} AND created>=?", (*args, float(since))
        return self._select(where, args, "id", limit, hide=NOT_NEWS)

    def recent(self, limit: int = 100, upto: int | None = None, since: float | None = None) -> list[Row]:
        """The newest live results (one per series), oldest first: what a new page shows (``since``: as ``after``)."""
        cols = self.columns()
        clauses: list[str] = ["live=1"] if "live" in cols else []
        args: tuple[object, ...] = ()
        if upto is not None:
            clauses.append("id<=?")
            args = (*args, int(upto))
        if since is not None:
            clauses.append("created>=?")
            args = (*args, float(since))
        return list(reversed(self._select(" AND ".join(clauses), args, "id DESC", limit, hide=NOT_LIVE)))

    def get(self, ref: str) -> Row | None:
        """One result by row id or by uuid (the ids of links and of the page)."""
        if ref.isdigit():
            rows = self._select("id=?", (int(ref),), limit=1)
        elif "uuid" in self.columns():
            rows = self._select("uuid=?", (ref,), limit=1)
        else:
            rows = []
        return rows[0] if rows else None

    def history(self, flt: HistoryFilter, limit: int = 1000) -> list[Row]:
        """Results matching ``flt``, newest first (feedback filtering is the caller's, on ``feedback``)."""
        clauses: list[str] = []
        args: list[object] = []
        if flt.day:
            start = time.mktime(time.strptime(flt.day, "%Y-%m-%d"))
            clauses.append("created>=? AND created<?")
            args += [start, start + 86400.0]
        if flt.modality:
            clauses.append("modality=?")
            args.append(flt.modality)
        if flt.decision:
            clauses.append("decision=?")
            args.append(flt.decision)
        return self._select(" AND ".join(clauses), tuple(args), "id DESC", limit)

    def feedback(self, result_ids: Sequence[int]) -> dict[int, list[Feedback]]:
        return dict(self._with_conn(feedback_for, list(result_ids)))

    def feedback_after(self, after_id: int) -> list[Feedback]:
        return list(self._with_conn(feedback_after, int(after_id)))

    def activity(self) -> tuple[float | None, int]:
        """(when the last file of any series arrived, how many series are still arriving) from the tracker."""
        try:
            rows = self.query("SELECT MAX(last_arrival), SUM(CASE WHEN state IN ('open','reopened') THEN 1 ELSE 0 END)"
                              " FROM series")
        except StateUnavailable:
            return None, 0
        if not rows or rows[0][0] is None:
            return None, 0
        return float(rows[0][0]), int(rows[0][1] or 0)


def _row(raw: Row) -> Row:
    """A result row: its stored JSON, then the row's own fields (``result_id`` ... ) on top."""
    try:
        payload = json.loads(raw.pop("json", None) or "{}")
    except ValueError:
        payload = {}
    out: Row = payload if isinstance(payload, dict) else {}
    out["result_id"] = int(raw.pop("id"))
    for key, value in raw.items():
        if key in ("decision", "modality") and not value and out.get(key):
            continue
        if key == "score" and key in out:
            continue  # the JSON's rounded score, or null for unscored
        out[key] = bool(value) if key == "live" else value
    return out
