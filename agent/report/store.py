"""Results: a queryable SQLite history plus a JSON-lines file, with at-most-one live alert per series.

The result row and the series' ``scored`` state are written in one transaction, so a crash never
loses a result or scores a series twice. The JSON-lines file is fed from the database like an
outbox: each line carries the result id, and on start the file's last id tells what is missing,
so a crash between the two writes neither loses nor duplicates a line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mediqa.agent.config import AgentConfig
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.series.tracker import SeriesTracker, connect

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, series_key TEXT NOT NULL,
    generation INTEGER NOT NULL, created REAL NOT NULL, modality TEXT, score REAL, decision TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 1, superseded_by INTEGER, acknowledged_at REAL, acknowledged_by TEXT,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_series ON results(series_uid);
"""


class ResultStore:
    def __init__(self, tracker: SeriesTracker, jsonl_path: Path, clock: Callable[[], float] = time.time) -> None:
        self.tracker = tracker
        self._jsonl = jsonl_path
        self._clock = clock
        tracker.execute_script(_SCHEMA)
        self.flush_jsonl()

    def save(self, result: SeriesResult, generation: int) -> int | None:
        """Store a result and mark its series scored, atomically. None when the series changed meanwhile."""
        payload = result.to_json()
        with self.tracker.transaction() as db:
            if not self.tracker.mark_scored(db, result.series_uid, generation):
                log.info("series %s changed while scoring; it will be scored again", result.series_key)
                return None
            cur = db.execute(
                "INSERT INTO results (series_uid, series_key, generation, created, modality, score, decision, json) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (result.series_uid, result.series_key, generation + 1, self._clock(), result.modality,
                 result.score, result.decision, json.dumps(payload)))
            new_id = int(cur.lastrowid or 0)
            db.execute("UPDATE results SET live=0, superseded_by=? WHERE series_uid=? AND id<>? AND live=1",
                       (new_id, result.series_uid, new_id))
        self.flush_jsonl()
        return new_id

    def acknowledge(self, result_id: int, who: str = "console") -> bool:
        with self.tracker.transaction() as db:
            cur = db.execute("UPDATE results SET acknowledged_at=?, acknowledged_by=? WHERE id=? AND "
                             "acknowledged_at IS NULL", (self._clock(), who, result_id))
        return cur.rowcount == 1

    def live(self, decision: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, json, acknowledged_at, created FROM results WHERE live=1"
        args: tuple[Any, ...] = ()
        if decision:
            sql += " AND decision=?"
            args = (decision,)
        rows = self.tracker.query(sql + " ORDER BY id", args).fetchall()
        return [dict(json.loads(j), result_id=i, acknowledged=a is not None, created=c) for i, j, a, c in rows]

    def history(self, series_uid: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT id, live, json FROM results", ()
        if series_uid:
            sql, args = sql + " WHERE series_uid=?", (series_uid,)
        rows = self.tracker.query(sql + " ORDER BY id", args).fetchall()
        return [dict(json.loads(j), result_id=i, live=bool(live)) for i, live, j in rows]

    def flush_jsonl(self) -> int:
        """Append every result not yet in the JSON-lines file; returns how many lines were written."""
        last = _last_id(self._jsonl)
        rows = self.tracker.query(
            "SELECT id, created, live, superseded_by, json FROM results WHERE id>? ORDER BY id", (last,)).fetchall()
        if not rows:
            return 0
        self._jsonl.parent.mkdir(parents=True, exist_ok=True)
        with open(self._jsonl, "a", encoding="utf-8") as fh:
            for rid, created, _live, _sup, payload in rows:
                line = dict(json.loads(payload), result_id=rid, created=created)
                fh.write(json.dumps(line, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return len(rows)


def _last_id(path: Path) -> int:
    """The last result id in the file (reads only its tail); a torn last line is ignored."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(tail):
        try:
            return int(json.loads(line)["result_id"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def open_store(config: AgentConfig, clock: Callable[[], float] = time.time) -> ResultStore:
    """The result store of an agent's state dir, for commands that read or acknowledge alerts."""
    state = config.state_path
    tracker = SeriesTracker(connect(state / "state.sqlite"), config.completion, clock)
    jsonl = Path(config.report.jsonl)
    return ResultStore(tracker, jsonl if jsonl.is_absolute() else state / jsonl, clock)
