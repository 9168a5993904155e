"""Results: a queryable SQLite history plus a JSON-lines file, with at-most-one live alert per series.

The result row and the series' ``scored`` state are written in one transaction: ``add`` writes the
row inside a transaction the caller holds (the agent, which marks the series scored in the same
one), so a crash never loses a result or scores a series twice. The JSON-lines file is fed from the
database like an outbox: each line carries the result id, and on start the file's last id tells
what is missing, so a crash between the two writes neither loses nor duplicates a line.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mediqa.agent.config import AgentConfig
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.state.db import StateDB, open_state

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]  # a result as stored (``SeriesResult.to_json``) plus the row's own fields


class ResultStore:
    """The ``results`` table of the state database (opened by ``StateDB``) and its JSON-lines outbox."""

    def __init__(self, db: StateDB, jsonl_path: Path, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._jsonl = jsonl_path
        self._clock = clock
        self.flush_jsonl()

    def add(self, db: sqlite3.Connection, result: SeriesResult, generation: int) -> int:
        """Inside the caller's transaction: store a result of ``generation``, superseding the series' last one.

        The caller marks the series scored in the same transaction, then calls ``flush_jsonl``.
        """
        cur = db.execute(
            "INSERT INTO results (series_uid, series_key, generation, created, modality, score, decision, json) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (result.series_uid, result.series_key, generation + 1, self._clock(), result.modality,
             result.score, result.decision, json.dumps(result.to_json())))
        new_id = int(cur.lastrowid or 0)
        db.execute("UPDATE results SET live=0, superseded_by=? WHERE series_uid=? AND id<>? AND live=1",
                   (new_id, result.series_uid, new_id))
        return new_id

    def acknowledge(self, result_id: int, who: str = "console") -> bool:
        with self.db.transaction() as db:
            cur = db.execute("UPDATE results SET acknowledged_at=?, acknowledged_by=? WHERE id=? AND "
                             "acknowledged_at IS NULL", (self._clock(), who, result_id))
        return cur.rowcount == 1

    def live(self, decision: str | None = None) -> list[JsonObject]:
        sql = "SELECT id, json, acknowledged_at, created FROM results WHERE live=1"
        args: tuple[object, ...] = ()
        if decision:
            sql += " AND decision=?"
            args = (decision,)
        rows = self.db.query(sql + " ORDER BY id", args)
        return [dict(json.loads(j), result_id=i, acknowledged=a is not None, created=c) for i, j, a, c in rows]

    def history(self, series_uid: str | None = None) -> list[JsonObject]:
        sql = "SELECT id, live, json FROM results"
        args: tuple[object, ...] = ()
        if series_uid:
            sql, args = sql + " WHERE series_uid=?", (series_uid,)
        rows = self.db.query(sql + " ORDER BY id", args)
        return [dict(json.loads(j), result_id=i, live=bool(live)) for i, live, j in rows]

    def flush_jsonl(self) -> int:
        """Append every result not yet in the JSON-lines file; returns how many lines were written."""
        last = _last_id(self._jsonl)
        rows = self.db.query(
            "SELECT id, created, live, superseded_by, json FROM results WHERE id>? ORDER BY id", (last,))
        if not rows:
            return 0
        self._jsonl.parent.mkdir(parents=True, exist_ok=True)
        torn = not _ends_with_newline(self._jsonl)
        with open(self._jsonl, "a", encoding="utf-8") as fh:
            if torn:  # a crash mid-line: end that line, or the next one would be glued onto it and lost
                fh.write("\n")
            for rid, created, _live, _sup, payload in rows:
                line = dict(json.loads(payload), result_id=rid, created=created)
                fh.write(json.dumps(line, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return len(rows)


def _ends_with_newline(path: Path) -> bool:
    """True for a missing or empty file, or one whose last byte ends a line."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return True
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
    except FileNotFoundError:
        return True


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


def jsonl_path(config: AgentConfig) -> Path:
    """``report.jsonl``: relative paths live in the state dir."""
    jsonl = Path(config.report.jsonl)
    return jsonl if jsonl.is_absolute() else config.state_path / jsonl


def open_store(config: AgentConfig, clock: Callable[[], float] = time.time) -> ResultStore:
    """The result store of an agent's state dir, for commands that read or acknowledge alerts."""
    return ResultStore(open_state(config.state_path), jsonl_path(config), clock)
