"""Series completion state, persisted in the state database (``StateDB``) so a restart resumes where it stopped.

States: open -> complete -> scored; a late instance turns ``scored`` into ``reopened`` (treated as
open), and the new result supersedes the old one. The tracker owns time through an injected clock,
so tests advance time instead of sleeping. There is no end-of-series marker in DICOM: a series is
complete after a quiet period (per modality) or early when an expected count is known and reached.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from mediqa.agent.config import CompletionConfig
from mediqa.agent.dicom.records import InstanceRecord, record_from_json, record_to_json
from mediqa.agent.state.db import StateDB

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class SeriesState:
    series_uid: str
    series_key: str
    modality: str
    state: str
    instances: int
    expected: int | None
    first_arrival: float
    last_arrival: float
    completed_at: float | None
    generation: int


class SeriesTracker:
    """Series, instances, files and saliency tables of the state database (opened by ``StateDB``)."""

    def __init__(self, db: StateDB, completion: CompletionConfig, clock: Clock = time.time) -> None:
        self.db = db
        self._completion = completion
        self._clock = clock

    # --- files -------------------------------------------------------------------------------
    def file_known(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when this exact file version was already indexed or finally skipped."""
        row = self.db.query_one("SELECT size, mtime_ns, status FROM files WHERE path=?", (path,))
        return row is not None and row[0] == size and row[1] == mtime_ns and row[2] in ("indexed", "skipped")

    def record_skip(self, path: str, size: int, mtime_ns: int, reason: str, final: bool) -> int:
        with self.db.transaction() as db:
            row = db.execute("SELECT attempts FROM files WHERE path=?", (path,)).fetchone()
            attempts = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)",
                       (path, size, mtime_ns, "skipped" if final else "retry", reason, attempts))
        return attempts

    # --- instances -----------------------------------------------------------------------------
    def add(self, record: InstanceRecord) -> bool:
        """Register an indexed instance; returns False for a duplicate (same SOP instance again)."""
        return self.add_many([record])[0]

    def add_many(self, records: list[InstanceRecord]) -> list[bool]:
        """Register several instances in one transaction (one commit per batch keeps indexing fast)."""
        now = self._clock()
        added = []
        with self.db.transaction() as db:
            for record in records:
                added.append(self._add(db, record, now))
        return added

    def _add(self, db: sqlite3.Connection, record: InstanceRecord, now: float) -> bool:
        db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,0)",
                   (record.path, record.size, record.mtime_ns, "indexed", None))
        if db.execute("SELECT 1 FROM instances WHERE sop_uid=?", (record.sop_instance_uid,)).fetchone():
            return False
        db.execute("INSERT INTO instances VALUES (?,?,?,?,?)",
                   (record.sop_instance_uid, record.series_uid, record.path, record_to_json(record), now))
        row = db.execute("SELECT state FROM series WHERE series_uid=?", (record.series_uid,)).fetchone()
        expected = _expected_count(record)
        if row is None:
            db.execute("INSERT INTO series VALUES (?,?,?,?,?,?,?,?,NULL,NULL,0)",
                       (record.series_uid, record.series_key, record.modality, "open", 1, expected, now, now))
            return True
        state = row[0]
        if state in ("scored", "complete"):
            state = "reopened"
            log.info("series %s re-opened by a late instance", record.series_key)
        db.execute("UPDATE series SET state=?, instances=instances+1, last_arrival=?, "
                   "expected=COALESCE(?, expected) WHERE series_uid=?",
                   (state, now, expected, record.series_uid))
        return True

    def store_saliency(self, series_uid: str, values: dict[tuple[str, int | None, int | None], float]) -> None:
        """Per-slice saliency computed as instances arrive (key: path, frame, tile; -1 stands for None)."""
        with self.db.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO slice_saliency VALUES (?,?,?,?,?)",
                           [(p, -1 if f is None else f, -1 if t is None else t, series_uid, v)
                            for (p, f, t), v in values.items()])

    def saliency(self, series_uid: str) -> dict[tuple[str, int | None, int | None], float]:
        rows = self.db.query("SELECT path, frame, tile, value FROM slice_saliency WHERE series_uid=?", (series_uid,))
        return {(p, None if f < 0 else f, None if t < 0 else t): v for p, f, t, v in rows}

    def records(self, series_uid: str) -> list[InstanceRecord]:
        rows = self.db.query("SELECT record FROM instances WHERE series_uid=? ORDER BY arrived", (series_uid,))
        return [record_from_json(r[0]) for r in rows]

    # --- completion ----------------------------------------------------------------------------
    def due(self) -> list[SeriesState]:
        """Open series that are complete now (quiet long enough, or expected count reached)."""
        now = self._clock()
        out = []
        for st in self._states("state IN ('open','reopened','complete')"):
            if st.state == "complete":
                out.append(st)  # completed before a crash, not yet scored
                continue
            quiet = now - st.last_arrival >= self._completion.quiet_for(st.modality)
            early = (self._completion.early_on_expected_count and st.expected is not None
                     and st.instances >= st.expected)
            if quiet or early:
                with self.db.transaction() as db:
                    db.execute("UPDATE series SET state='complete', completed_at=? WHERE series_uid=?",
                               (now, st.series_uid))
                log.debug("series %s complete (%s)", st.series_key, "expected count" if early else "quiet")
                out.append(self.state(st.series_uid))  # type: ignore[arg-type]
        return out

    def next_deadline(self) -> float | None:
        """Seconds until the earliest open series goes quiet (None when nothing is open)."""
        now = self._clock()
        waits = [st.last_arrival + self._completion.quiet_for(st.modality) - now
                 for st in self._states("state IN ('open','reopened')")]
        return max(0.0, min(waits)) if waits else None

    def mark_scored(self, db: sqlite3.Connection, series_uid: str, generation: int) -> bool:
        """Inside the caller's transaction (with the result row): scored, unless new instances came."""
        cur = db.execute("UPDATE series SET state='scored', scored_at=?, generation=generation+1 "
                         "WHERE series_uid=? AND state='complete' AND generation=?",
                         (self._clock(), series_uid, generation))
        return cur.rowcount == 1

    def state(self, series_uid: str) -> SeriesState | None:
        found = self._states("series_uid=?", (series_uid,))
        return found[0] if found else None

    def all_states(self) -> list[SeriesState]:
        return self._states("1=1")

    def _states(self, where: str, args: tuple[object, ...] = ()) -> list[SeriesState]:
        rows = self.db.query(
            "SELECT series_uid, series_key, modality, state, instances, expected, first_arrival, last_arrival, "
            f"completed_at, generation FROM series WHERE {where} ORDER BY first_arrival", args)
        return [SeriesState(*row) for row in rows]


def _expected_count(record: InstanceRecord) -> int | None:
    """Instance count announced by the headers, when it can be trusted.

    ImagesInAcquisition counts the slices of one time point; a multi-time-point series announces
    NumberOfTemporalPositions too. An enhanced multi-frame object with all its frames is one file.
    """
    if record.images_in_acquisition and record.images_in_acquisition > 0 and not record.is_multiframe:
        return record.images_in_acquisition * max(1, record.number_of_temporal_positions or 1)
    return None
