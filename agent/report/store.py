"""Results: a queryable SQLite history plus a JSON-lines file, with at-most-one live result per series.

The result row and the series' ``scored`` state are written in one transaction: ``add`` writes the
row inside a transaction the caller holds (the agent, which marks the series scored in the same
one), so a crash never loses a result or scores a series twice.

Every result has a stable ``uuid`` (UUID4), which survives the loss of the database: results.jsonl is
fed from the database like an outbox, one line per uuid, never two. A row is marked written
(``jsonl_at``) after its line is on disk; a crash in between leaves the line at the file's end, where
the next flush finds its uuid (it reads only the tail) and marks it instead of writing it again. A line
torn by a crash is ended and ignored. A superseding result's line names the uuid it ``supersedes`` and
says whether it is ``live``.

When the database is new but results.jsonl is not (the old database was lost, or moved aside as
corrupt), ``seed_from_jsonl`` rebuilds the history from the file: every series already reported, with
the digest of the instances it was scored on. A series scored again on the same instances and content
(``digest``) is recorded as history only: no new line, no console line, no second alert.

``shown_at`` records when the console line was printed: a result committed but never shown (a kill in
between) is shown on the next start, marked late.

A result of origin ``history`` (an old series met at the agent's first start, ``alerts.max_age_h``) is
stored like any other (the series' live result, a results.jsonl line) but is never news: it is recorded
as shown when it is added, and ``live(since=...)``, the notifier and the SR outbox leave it out.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from mediqa.agent.config import AgentConfig
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.state.db import StateDB, open_state

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]  # a result as stored (``SeriesResult.to_json``) plus the row's own fields

# Fields of a results.jsonl line that belong to the row, not to the result.
LINE_FIELDS = ("result_id", "uuid", "created", "live", "supersedes", "instances_digest", "history")


class Saved(NamedTuple):
    result_id: int
    uuid: str
    echo: bool  # the same instances as the live result: recorded as history only, nothing to show or write


class ResultStore:
    """The ``results`` table of the state database (opened by ``StateDB``) and its JSON-lines outbox."""

    def __init__(self, db: StateDB, jsonl_path: Path, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._jsonl = jsonl_path
        self._clock = clock

    @property
    def jsonl_path(self) -> Path:
        return self._jsonl

    def add(self, db: sqlite3.Connection, result: SeriesResult, generation: int, *, digest: str | None = None,
            shown_at: float | None = None, history: bool = False) -> Saved:
        """Inside the caller's transaction: store a result of ``generation``, superseding the series' live one.

        ``digest`` names the instances (and their content) the result was computed from: equal to the
        live result's, the new one is history only (``Saved.echo``). An acknowledged alert superseded by
        the same decision stays acknowledged. ``history``: an old series, stored as origin ``history``
        and never shown. The caller marks the series scored in the same transaction, then shows the
        result (``mark_shown``) and calls ``flush_jsonl``.
        """
        now = self._clock()
        origin = "history" if history else "scored"
        if history:
            shown_at = now  # never shown: nothing to show late after a restart either
        new_uuid = str(uuid.uuid4())
        payload = json.dumps(result.to_json())
        score = result.score if math.isfinite(result.score) else None
        prev = db.execute("SELECT id, uuid, decision, acknowledged_at, acknowledged_by, digest FROM results "
                          "WHERE series_uid=? AND live=1 ORDER BY id DESC LIMIT 1", (result.series_uid,)).fetchone()
        if prev is not None and digest is not None and prev[5] == digest:
            cur = db.execute(
                "INSERT INTO results (series_uid, series_key, generation, created, modality, score, decision, live, "
                "superseded_by, json, uuid, digest, origin, shown_at, jsonl_at) VALUES (?,?,?,?,?,?,?,0,?,?,?,?,?,?,?)",
                (result.series_uid, result.series_key, generation + 1, now, result.modality, score, result.decision,
                 prev[0], payload, new_uuid, digest, "rescored", now, now))
            return Saved(int(cur.lastrowid or 0), new_uuid, True)
        ack_at, ack_by = (prev[3], prev[4]) if prev is not None and prev[3] is not None and \
            prev[2] == result.decision else (None, None)
        cur = db.execute(
            "INSERT INTO results (series_uid, series_key, generation, created, modality, score, decision, live, "
            "acknowledged_at, acknowledged_by, json, uuid, supersedes, digest, origin, shown_at) "
            "VALUES (?,?,?,?,?,?,?,1,?,?,?,?,?,?,?,?)",
            (result.series_uid, result.series_key, generation + 1, now, result.modality, score, result.decision,
             ack_at, ack_by, payload, new_uuid, prev[1] if prev is not None else None, digest, origin, shown_at))
        new_id = int(cur.lastrowid or 0)
        db.execute("UPDATE results SET live=0, superseded_by=? WHERE series_uid=? AND id<>? AND live=1",
                   (new_id, result.series_uid, new_id))
        return Saved(new_id, new_uuid, False)

    def empty(self) -> bool:
        """True when the database holds no result at all (a new one, or one recreated empty)."""
        return self.db.query_one("SELECT 1 FROM results LIMIT 1") is None

    def first_result_at(self) -> float | None:
        """When the database's first result was made (the agent's first start on it); None: no result yet."""
        row = self.db.query_one("SELECT created FROM results ORDER BY id LIMIT 1")
        return None if row is None else float(row[0])

    def is_echo(self, series_uid: str, digest: str) -> bool:
        """True when the series' live result was computed from exactly these instances (a read)."""
        row = self.db.query_one("SELECT digest FROM results WHERE series_uid=? AND live=1 ORDER BY id DESC LIMIT 1",
                                (series_uid,))
        return row is not None and row[0] == digest

    def mark_shown(self, result_id: int, when: float | None = None) -> None:
        with self.db.transaction() as db:
            db.execute("UPDATE results SET shown_at=? WHERE id=? AND shown_at IS NULL",
                       (self._clock() if when is None else when, result_id))

    def unshown(self) -> list[tuple[int, SeriesResult, bool, float]]:
        """Results committed but never shown: (id, result, live, created), oldest first."""
        rows = self.db.query("SELECT id, json, live, created FROM results WHERE shown_at IS NULL ORDER BY id")
        return [(int(i), SeriesResult.from_json(json.loads(j)), bool(live), float(c)) for i, j, live, c in rows]

    def acknowledge(self, result_id: int, who: str = "console") -> bool:
        with self.db.transaction() as db:
            cur = db.execute("UPDATE results SET acknowledged_at=?, acknowledged_by=? WHERE id=? AND "
                             "acknowledged_at IS NULL", (self._clock(), who, result_id))
        return cur.rowcount == 1

    def live(self, decision: str | None = None, *, since: float | None = None) -> list[JsonObject]:
        """The live result of every series (of ``decision``), oldest first.

        ``since`` (``AlertsConfig.live_since``): only what is still news, created at or after it and not
        scored as history; None: every live result.
        """
        sql = "SELECT id, uuid, supersedes, json, acknowledged_at, created, origin FROM results WHERE live=1"
        args: list[object] = []
        if decision:
            sql += " AND decision=?"
            args.append(decision)
        if since is not None:
            sql += " AND created>=? AND origin<>'history'"
            args.append(since)
        rows = self.db.query(sql + " ORDER BY id", tuple(args))
        return [dict(json.loads(j), result_id=i, uuid=u, supersedes=s, acknowledged=a is not None, created=c,
                     origin=o) for i, u, s, j, a, c, o in rows]

    def history(self, series_uid: str | None = None) -> list[JsonObject]:
        sql = "SELECT id, uuid, supersedes, origin, live, json FROM results"
        args: tuple[object, ...] = ()
        if series_uid:
            sql, args = sql + " WHERE series_uid=?", (series_uid,)
        rows = self.db.query(sql + " ORDER BY id", args)
        return [dict(json.loads(j), result_id=i, uuid=u, supersedes=s, origin=o, live=bool(live))
                for i, u, s, o, live, j in rows]

    # --- the outbox ----------------------------------------------------------------------------------
    def flush_jsonl(self) -> int:
        """Append a line for every result not yet in the JSON-lines file; returns how many were written.

        Runs inside a write transaction, so two processes on one state dir never both write a line;
        raises ``OSError`` when the file cannot be written (nothing is marked then: it is tried again).
        """
        if self.db.query_one("SELECT 1 FROM results WHERE jsonl_at IS NULL LIMIT 1") is None:
            return 0
        with self.db.transaction() as db:
            rows = db.execute("SELECT id, uuid, created, live, supersedes, digest, origin, json FROM results "
                              "WHERE jsonl_at IS NULL ORDER BY id").fetchall()
            found, legacy_max = _tail_ids(self._jsonl, need=len(rows) + 1)
            todo = [r for r in rows if r[1] not in found
                    and not (r[6] == "v1" and legacy_max is not None and r[0] <= legacy_max)]
            if todo:
                self._append([_line(*r) for r in todo])
            db.executemany("UPDATE results SET jsonl_at=? WHERE id=?", [(self._clock(), r[0]) for r in rows])
        return len(todo)

    def repair_torn_tail(self, recent: int = 10) -> int:
        """A file that ends inside a line (cut by a crash or a full disk): the latest results whose lines
        are not in the tail are written again by the next flush. Returns how many."""
        if _ends_with_newline(self._jsonl):
            return 0
        rows = self.db.query("SELECT id, uuid, origin FROM results WHERE jsonl_at IS NOT NULL AND origin<>'rescored' "
                             "ORDER BY id DESC LIMIT ?", (recent,))
        found, legacy_max = _tail_ids(self._jsonl, need=recent + 1)
        lost = [(rid,) for rid, key, origin in rows
                if key not in found and not (origin == "v1" and legacy_max is not None and rid <= legacy_max)]
        if lost:
            with self.db.transaction() as db:
                db.executemany("UPDATE results SET jsonl_at=NULL WHERE id=?", lost)
            log.warning("%s ends inside a line: %d result line(s) will be written again", self._jsonl.name, len(lost))
        return len(lost)

    def _append(self, lines: list[str]) -> None:
        self._jsonl.parent.mkdir(parents=True, exist_ok=True)
        torn = not _ends_with_newline(self._jsonl)
        fd = os.open(self._jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            if torn:  # a crash mid-line: end that line, or the next one would be glued onto it and lost
                fh.write("\n")
            for line in lines:
                fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def seed_from_jsonl(self) -> int:
        """Rebuild the history of a new database from results.jsonl; returns how many results were read.

        Every valid line becomes a result row again (its uuid, and its id when still free), already shown
        and written; the last line of each series is its live result. Acknowledgements are not in the
        file: a seeded retake is reminded at the next start until acknowledged again.
        """
        rows: list[JsonObject] = []
        seen: set[str] = set()
        for line in _lines(self._jsonl):
            if not isinstance(line.get("series_uid"), str) or not isinstance(line.get("decision"), str):
                continue
            key = str(line.get("uuid") or "")
            if key and key in seen:
                continue
            seen.add(key)
            rows.append(line)
        if not rows:
            return 0
        last: dict[str, int] = {}
        with self.db.transaction() as db:
            for line in rows:
                rid = line.get("result_id")
                if not isinstance(rid, int) or db.execute("SELECT 1 FROM results WHERE id=?", (rid,)).fetchone():
                    rid = None
                created = float(line.get("created") or self._clock())
                payload = {k: v for k, v in line.items() if k not in LINE_FIELDS}
                cur = db.execute(
                    "INSERT INTO results (id, series_uid, series_key, generation, created, modality, score, decision, "
                    "live, json, uuid, supersedes, digest, origin, shown_at, jsonl_at) "
                    "VALUES (?,?,?,0,?,?,?,?,0,?,?,?,?,?,?,?)",
                    (rid, line["series_uid"], str(line.get("series_key") or ""), created, line.get("modality"),
                     line.get("score") if isinstance(line.get("score"), (int, float)) else None, line["decision"],
                     json.dumps(payload), str(line.get("uuid") or uuid.uuid4()), line.get("supersedes"),
                     line.get("instances_digest"), "history" if line.get("history") is True else "jsonl",
                     created, created))
                new_id = int(cur.lastrowid or 0)
                if line["series_uid"] in last:
                    db.execute("UPDATE results SET superseded_by=? WHERE id=?", (new_id, last[line["series_uid"]]))
                last[line["series_uid"]] = new_id
            db.executemany("UPDATE results SET live=1 WHERE id=?", [(i,) for i in last.values()])
        log.warning("state database started anew: %d results of %d series restored from %s", len(rows), len(last),
                    self._jsonl.name)
        return len(rows)


def _line(rid: int, key: str, created: float, live: int, supersedes: str | None, digest: str | None,
          origin: str, payload: str) -> str:
    line = dict(json.loads(payload), result_id=rid, uuid=key, created=created, live=bool(live),
                supersedes=supersedes, instances_digest=digest)
    if origin == "history":  # an old series at the first start: a rebuilt database must not make it news
        line["history"] = True
    return json.dumps(line, sort_keys=True)


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


def _parse(raw: bytes) -> JsonObject | None:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None  # a torn line, or not ours
    return obj if isinstance(obj, dict) else None


def _tail_ids(path: Path, need: int, block: int = 1 << 18) -> tuple[set[str], int | None]:
    """The uuids of the file's last ``need`` valid lines (read backwards, block by block), and the
    largest id among lines of version 1 seen there (they carry ``result_id`` and no uuid)."""
    found: set[str] = set()
    legacy: int | None = None
    if not path.exists():
        return found, None
    with open(path, "rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        rest = b""
        valid = 0
        while pos > 0 and valid < need:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step) + rest
            parts = chunk.split(b"\n")
            rest = parts[0] if pos > 0 else b""  # cut at the block's start: completed by the next block
            for raw in reversed(parts[1:] if pos > 0 else parts):
                obj = _parse(raw) if raw.strip() else None
                if obj is None:
                    continue
                valid += 1
                if isinstance(obj.get("uuid"), str):
                    found.add(obj["uuid"])
                elif isinstance(obj.get("result_id"), int):
                    legacy = max(legacy or 0, obj["result_id"])
    return found, legacy


def _lines(path: Path) -> Iterator[JsonObject]:
    """Every valid line of the file, in order (torn or foreign lines are left out)."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for raw in fh:
            obj = _parse(raw) if raw.strip() else None
            if obj is not None:
                yield obj


def jsonl_path(config: AgentConfig) -> Path:
    """``report.jsonl``: relative paths live in the state dir."""
    jsonl = Path(os.path.expandvars(os.path.expanduser(config.report.jsonl)))
    return jsonl if jsonl.is_absolute() else config.state_path / jsonl


def open_store(config: AgentConfig, clock: Callable[[], float] = time.time) -> ResultStore:
    """The result store of an agent's state dir, for commands that read or acknowledge alerts."""
    return ResultStore(open_state(config.state_path), jsonl_path(config), clock)
