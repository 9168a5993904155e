"""Series completion state, persisted in the state database (``StateDB``) so a restart resumes where it stopped.

States: open -> complete -> scored; a late instance, or an instance whose file content changed (its
crc32 differs), turns ``scored`` into ``reopened`` (treated as open), and the new result supersedes
the old one. The tracker owns time through an injected clock, so tests advance time instead of
sleeping. There is no end-of-series marker in DICOM: a series is complete after a quiet period (per
modality) or early when an expected count is known and reached; the agent may ``hold`` a series that
would be complete (files of its folders still pending, files changed since they were read).

Every change to a series' instances bumps its ``changes`` counter: a result is recorded only for the
exact set it was computed from (``mark_scored`` compares it). Skipped files are remembered with the
series they named (``DicomSkip.series_uid``), so a series whose every file was skipped is still a
series (with no instances) that gets its one "skipped" result, and a scored one can say how many of
its images could not be read.

Paths are stored bytes-safe (``db_path``): any file name the OS gives can be recorded.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from mediqa.agent.config import CompletionConfig
from mediqa.agent.dicom.records import InstanceRecord, record_from_json, record_to_json, series_key
from mediqa.agent.state.db import StateDB, db_path, path_from_db

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# Skip reasons that are a choice about the whole series (not a failure to read one of its images).
FILTER_REASONS = frozenset({"derived", "localizer", "not_ct_mr_image", "dicomdir"})
FOLDERS_MEMO_MAX = 64  # series whose folders are kept (see ``SeriesTracker.folders``)
DECODED_MAX = 4096  # records kept from their insert until their series asks for them (see ``records``)


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
    changes: int = 0  # bumped by every change to its instances (the guard of ``mark_scored``)
    attempts: int = 0  # scoring attempts not finished (a process that died while scoring it)


@dataclass
class FileOutcome:
    """What reading one stable file gave: a record (and its content digest), or a skip.

    ``status`` is set by ``SeriesTracker.apply``: ``new``, ``duplicate`` (the instance is already known
    from another file), ``unchanged`` (same content again), ``changed`` (same instance, new content),
    ``retry`` (read it again later) or ``skipped`` (final).
    """

    path: str
    size: int
    mtime_ns: int
    record: InstanceRecord | None = None
    record_json: str = ""
    crc: int | None = None
    reason: str = ""
    detail: str = ""
    retry: bool = False
    series_uid: str | None = None
    status: str = ""
    attempts: int = 0


FileRow = tuple[int, int, str, str | None, int, int | None]  # size, mtime_ns, status, reason, attempts, crc


class SeriesTracker:
    """Series, instances, files and saliency tables of the state database (opened by ``StateDB``)."""

    def __init__(self, db: StateDB, completion: CompletionConfig, clock: Clock = time.time) -> None:
        self.db = db
        self._completion = completion
        self._clock = clock
        self._records_memo: tuple[str, list[str], list[InstanceRecord]] | None = None  # see ``records``
        self._folders_memo: dict[str, tuple[int, int | None, frozenset[str]]] = {}  # see ``folders``
        self._decoded: dict[str, InstanceRecord] = {}  # stored text -> its record, see ``records``
        self._decoded_lock = threading.Lock()  # ``records`` is also called from the contact sheets' thread

    # --- files -------------------------------------------------------------------------------
    def file_row(self, path: str) -> FileRow | None:
        row = self.db.query_one("SELECT size, mtime_ns, status, reason, attempts, crc FROM files WHERE path=?",
                                (db_path(path),))
        return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5])

    def file_known(self, path: str, size: int, mtime_ns: int, rows: Mapping[str, FileRow] | None = None) -> bool:
        """True when this exact file version was already indexed or finally skipped. ``rows``: its folder's
        rows read beforehand (``folder_rows``); a path not among them is looked up on its own."""
        row = rows.get(path) if rows is not None else None
        return _known(row if row is not None else self.file_row(path), size, mtime_ns)

    def folder_rows(self, folder: str) -> dict[str, FileRow]:
        """The rows of the files directly in ``folder`` (not below it), by path: one query for a walk's folder.

        The periodic rescan checks every file of the export against its row; one query per file was most of
        an idle agent's CPU on a big export (20,000 files every 30 s)."""
        prefix = db_path(os.path.join(folder, ""))
        upper = prefix[:-1] + bytes([prefix[-1] + 1])  # every path that starts with the prefix sorts below this
        rows = self.db.query("SELECT path, size, mtime_ns, status, reason, attempts, crc FROM files "
                             "WHERE path >= ? AND path < ? AND instr(substr(path, ?), ?) = 0",
                             (prefix, upper, len(prefix) + 1, os.fsencode(os.sep)))
        return {path_from_db(r[0]): (r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}

    def record_skip(self, path: str, size: int, mtime_ns: int, reason: str, final: bool,
                    series_uid: str | None = None) -> int:
        """One skip on its own (``apply`` records many at once); returns the attempts so far."""
        out = FileOutcome(path, size, mtime_ns, reason=reason, retry=not final, series_uid=series_uid)
        self.apply([out], max_retries=1 if final else 1 << 30)
        return out.attempts

    def apply(self, outcomes: Sequence[FileOutcome], max_retries: int = 20) -> None:
        """Record a batch of read files in one transaction (sets each ``status``).

        Each file is its own savepoint: a file whose record cannot be stored (a bug, an odd value) becomes
        a final skip ``internal: <type>`` and the others are recorded; only a database error (full,
        corrupt) fails the whole batch, which then stays pending for the caller.
        """
        now = self._clock()
        with self.db.transaction() as db:
            for out in outcomes:
                db.execute("SAVEPOINT one_file")
                try:
                    out.status = self._index(db, out, now) if out.record is not None else \
                        self._skip(db, out, now, max_retries)
                except sqlite3.Error:
                    raise
                except Exception as exc:  # noqa: BLE001 - one file's bug is that file's skip, never the batch's
                    db.execute("ROLLBACK TO one_file")
                    log.error("a file could not be recorded (%s): skipped", type(exc).__name__)
                    out.record, out.retry, out.reason = None, False, f"internal: {type(exc).__name__}"
                    out.status = self._skip(db, out, now, max_retries)
                db.execute("RELEASE one_file")

    def _skip(self, db: sqlite3.Connection, out: FileOutcome, now: float, max_retries: int) -> str:
        path = db_path(out.path)
        row = db.execute("SELECT attempts FROM files WHERE path=?", (path,)).fetchone()
        out.attempts = (row[0] if row else 0) + 1
        final = not out.retry or out.attempts >= max_retries
        db.execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, status, reason, attempts, series_uid, crc) "
                   "VALUES (?,?,?,?,?,?,?,NULL)", (path, out.size, out.mtime_ns, "skipped" if final else "retry",
                                                  out.reason, out.attempts, out.series_uid))
        if not final:
            return "retry"
        self._forget_instances_at(db, path, "", now)  # it held an instance before: it no longer does
        if out.series_uid:
            self._note_skip(db, out.series_uid, out.reason, now)
        return "skipped"

    def _note_skip(self, db: sqlite3.Connection, uid: str, reason: str, now: float) -> None:
        """A file of series ``uid`` was skipped for good: the series exists (maybe with no instance)."""
        row = db.execute("SELECT state FROM series WHERE series_uid=?", (uid,)).fetchone()
        if row is None:
            db.execute("INSERT INTO series (series_uid, series_key, modality, state, instances, expected, "
                       "first_arrival, last_arrival) VALUES (?,?,?,?,0,NULL,?,?)",
                       (uid, series_key(uid), "", "open", now, now))
        elif row[0] in ("open", "reopened"):
            db.execute("UPDATE series SET last_arrival=MAX(last_arrival, ?), changes=changes+1 WHERE series_uid=?",
                       (now, uid))
        elif reason not in FILTER_REASONS:  # an image of a scored series turned out unreadable: say so anew
            log.info("series %s re-opened: one of its images cannot be read", series_key(uid))
            db.execute("UPDATE series SET state='reopened', last_arrival=?, changes=changes+1 WHERE series_uid=?",
                       (now, uid))

    # --- instances -----------------------------------------------------------------------------
    def add(self, record: InstanceRecord, crc: int | None = None) -> bool:
        """Register an indexed instance; returns False for a duplicate (same SOP instance again)."""
        return self.add_many([record], [crc])[0]

    def add_many(self, records: list[InstanceRecord], crcs: Sequence[int | None] | None = None) -> list[bool]:
        """Register several instances in one transaction (one commit per batch keeps indexing fast)."""
        outs = [FileOutcome(r.path, r.size, r.mtime_ns, record=r, record_json=record_to_json(r),
                            crc=crcs[i] if crcs else None) for i, r in enumerate(records)]
        self.apply(outs)
        return [o.status == "new" for o in outs]

    def _index(self, db: sqlite3.Connection, out: FileOutcome, now: float) -> str:
        record = out.record
        assert record is not None
        text = out.record_json or record_to_json(record)
        path = db_path(record.path)
        sop, uid = record.sop_instance_uid, record.series_uid
        db.execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, status, reason, attempts, series_uid, crc) "
                   "VALUES (?,?,?,'indexed',NULL,0,?,?)", (path, out.size, out.mtime_ns, uid, out.crc))
        self._forget_instances_at(db, path, sop, now)  # another instance was in this file before
        existing = db.execute("SELECT path, crc, record, series_uid FROM instances WHERE sop_uid=?", (sop,)).fetchone()
        if existing is not None:
            old_path, old_crc, old_text, old_uid = existing
            if bytes(old_path) != path:
                return "duplicate"  # the same instance again, in another file
            same = old_crc == out.crc if (old_crc is not None and out.crc is not None) else old_text == text
            db.execute("UPDATE instances SET record=?, crc=? WHERE sop_uid=?", (text, out.crc, sop))
            if same:
                return "unchanged"  # touched, or copied again: the content is what was scored
            db.execute("DELETE FROM slice_saliency WHERE path=?", (path,))
            db.execute("UPDATE instances SET arrived=? WHERE sop_uid=?", (now, sop))
            self._keep_decoded(text, record)
            self._changed(db, old_uid, now)
            log.info("series %s: the content of one of its files changed", series_key(old_uid))
            return "changed"
        db.execute("INSERT INTO instances (sop_uid, series_uid, path, record, arrived, crc) VALUES (?,?,?,?,?,?)",
                   (sop, uid, path, text, now, out.crc))
        self._keep_decoded(text, record)
        row = db.execute("SELECT state FROM series WHERE series_uid=?", (uid,)).fetchone()
        expected = _expected_count(record)
        if row is None:
            db.execute("INSERT INTO series (series_uid, series_key, modality, state, instances, expected, "
                       "first_arrival, last_arrival) VALUES (?,?,?,?,?,?,?,?)",
                       (uid, record.series_key, record.modality, "open", 1, expected, now, now))
            return "new"
        state = row[0]
        if state in ("scored", "complete"):
            state = "reopened"
            log.info("series %s re-opened by a late instance", record.series_key)
        db.execute("UPDATE series SET state=?, modality=CASE WHEN instances=0 THEN ? ELSE modality END, "
                   "instances=instances+1, last_arrival=?, expected=COALESCE(?, expected), changes=changes+1 "
                   "WHERE series_uid=?", (state, record.modality, now, expected, uid))
        return "new"

    def _changed(self, db: sqlite3.Connection, uid: str, now: float) -> None:
        db.execute("UPDATE series SET changes=changes+1, last_arrival=MAX(last_arrival, ?), "
                   "state=CASE WHEN state IN ('scored','complete') THEN 'reopened' ELSE state END "
                   "WHERE series_uid=?", (now, uid))

    def _forget_instances_at(self, db: sqlite3.Connection, path: bytes, keep_sop: str, now: float) -> None:
        """Instances recorded at ``path`` other than ``keep_sop``: the file holds something else now."""
        rows = db.execute("SELECT sop_uid, series_uid FROM instances WHERE path=? AND sop_uid<>?",
                          (path, keep_sop)).fetchall()
        for sop, uid in rows:
            db.execute("DELETE FROM instances WHERE sop_uid=?", (sop,))
            db.execute("UPDATE series SET instances=MAX(0, instances-1) WHERE series_uid=?", (uid,))
            self._changed(db, uid, now)
        if rows:
            db.execute("DELETE FROM slice_saliency WHERE path=?", (path,))

    def store_saliency(self, series_uid: str, values: dict[tuple[str, int | None, int | None], float]) -> None:
        """Per-slice saliency computed as instances arrive (key: path, frame, tile; -1 stands for None)."""
        with self.db.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO slice_saliency VALUES (?,?,?,?,?)",
                           [(db_path(p), -1 if f is None else f, -1 if t is None else t, series_uid, v)
                            for (p, f, t), v in values.items()])

    def saliency(self, series_uid: str) -> dict[tuple[str, int | None, int | None], float]:
        rows = self.db.query("SELECT path, frame, tile, value FROM slice_saliency WHERE series_uid=?", (series_uid,))
        return {(path_from_db(p), None if f < 0 else f, None if t < 0 else t): v for p, f, t, v in rows}

    def records(self, series_uid: str) -> list[InstanceRecord]:
        """The series' instance records, in arrival order.

        The rows are read each time; decoding their JSON cost more than the query (a 2,000-slice CT: ~90 ms
        at completion). So a record indexed by this process is kept with the text it was stored as until its
        series asks for it (``DECODED_MAX`` at most, the oldest dropped first), when its series announces its
        count: such a series is scored the moment its last file is indexed. Series without a count are not
        kept: they wait a quiet period anyway, and keeping a whole start-up backlog's records left the idle
        agent 10-15 MB bigger (19,880 files in 140 series, one run each: 227.8-235.7 MB kept, 214.6 and
        218.9 MB not). The last series' decoded records are kept too: scoring, the SR and the contact sheet
        each ask for the same series in a row. Both are keyed by the stored text, and a record is a function
        of its text (``record_from_json``), so a changed row is decoded again.
        """
        # Sorted here, not by SQLite: its sorter copied every 1.5 KB row (7.8 against 3.2 ms for 2,000 rows).
        found = self.db.query("SELECT arrived, rowid, record FROM instances WHERE series_uid=?", (series_uid,))
        found.sort(key=lambda row: (row[0], row[1]))
        rows = [r[2] for r in found]
        memo = self._records_memo
        if memo is not None and memo[0] == series_uid and memo[1] == rows:
            return list(memo[2])
        # The same series asked before (it was passed to the model early, ``loop.early``): what it had then
        # is decoded already; only what arrived since comes from the kept records or the JSON.
        before = dict(zip(memo[1], memo[2], strict=True)) if memo is not None and memo[0] == series_uid else {}
        with self._decoded_lock:
            kept = [before[text] if text in before else self._decoded.pop(text, None) for text in rows]
        records = [record if record is not None else record_from_json(text) for record, text in zip(kept, rows,
                                                                                                   strict=True)]
        self._records_memo = (series_uid, rows, records)
        return list(records)

    def forget_decoded(self) -> None:
        """Drop the records kept for ``records`` (the agent is idle: their memory goes back)."""
        with self._decoded_lock:
            self._decoded.clear()
        self._records_memo = None

    def _keep_decoded(self, text: str, record: InstanceRecord) -> None:
        if _expected_count(record) is None:
            return  # it completes after a quiet period, in which scoring ahead decodes it off the result's path
        with self._decoded_lock:
            if len(self._decoded) >= DECODED_MAX:
                self._decoded.pop(next(iter(self._decoded)), None)
            self._decoded[text] = record

    def content(self, series_uid: str) -> list[tuple[str, int | None]]:
        """(SOP instance UID, crc32) of each instance: what a result was computed from."""
        rows = self.db.query("SELECT sop_uid, crc FROM instances WHERE series_uid=? ORDER BY sop_uid", (series_uid,))
        return [(str(sop), crc) for sop, crc in rows]

    def indexed_files(self, series_uid: str) -> list[tuple[str, int, int]]:
        """(path, size, mtime_ns) of each file indexed for the series, as they were when read."""
        rows = self.db.query("SELECT path, size, mtime_ns FROM files WHERE series_uid=? AND status='indexed'",
                             (series_uid,))
        return [(path_from_db(p), size, mtime) for p, size, mtime in rows]

    def folders(self, series_uid: str) -> set[str]:
        """The folders holding the series' files (indexed or skipped).

        Asked for every series that looks complete on every pass while files still arrive: the answer is
        kept per series with the file count and highest rowid it was computed from (any insert, replace or
        move of a file between series changes one of them). When files were only added since, just the
        new rows are read; otherwise all of them. So a 2,000-file export is not read again on each pass
        (that was O(n) per pass, O(n^2) per series).
        """
        count, top = self.db.query_one("SELECT COUNT(*), MAX(rowid) FROM files WHERE series_uid=?",
                                       (series_uid,)) or (0, None)
        memo = self._folders_memo.get(series_uid)
        if memo is not None and (memo[0], memo[1]) == (count, top):
            return set(memo[2])
        if memo is not None and memo[1] is not None and top is not None:  # files came: only the new rows
            rows = self.db.query("SELECT path FROM files WHERE series_uid=? AND rowid>?", (series_uid, memo[1]))
            if memo[0] + len(rows) == count:  # nothing left the series meanwhile: the old answer still holds
                folders = set(memo[2]) | {os.path.dirname(path_from_db(p)) for (p,) in rows}
                self._folders_memo[series_uid] = (count, top, frozenset(folders))
                return folders
        rows = self.db.query("SELECT path FROM files WHERE series_uid=?", (series_uid,))
        folders = {os.path.dirname(path_from_db(p)) for (p,) in rows}
        if len(self._folders_memo) >= FOLDERS_MEMO_MAX:
            del self._folders_memo[next(iter(self._folders_memo))]
        self._folders_memo[series_uid] = (count, top, frozenset(folders))
        return folders

    def skip_counts(self, series_uid: str) -> dict[str, int]:
        """Files of the series skipped for good, per reason."""
        rows = self.db.query("SELECT reason, COUNT(*) FROM files WHERE series_uid=? AND status='skipped' "
                             "GROUP BY reason ORDER BY reason", (series_uid,))
        return {str(reason): int(n) for reason, n in rows}

    # --- completion ----------------------------------------------------------------------------
    def due(self, hold: Callable[[SeriesState], bool] | None = None) -> list[SeriesState]:
        """Series to score now: quiet long enough or the expected count reached (and not held), or
        completed before a crash and not yet scored. ``hold(state)`` True keeps a series waiting."""
        now = self._clock()
        out = []
        for st in self._states("state IN ('open','reopened','complete')"):
            early = False
            if st.state != "complete":
                quiet = now - st.last_arrival >= self._completion.quiet_for(st.modality)
                early = bool(self._completion.early_on_expected_count and st.expected is not None
                             and st.instances >= st.expected)
                if not (quiet or early):
                    continue
            if hold is not None and hold(st):
                continue
            if st.state != "complete":
                try:
                    with self.db.transaction() as db:
                        db.execute("UPDATE series SET state='complete', completed_at=? WHERE series_uid=? "
                                   "AND changes=?", (now, st.series_uid, st.changes))
                except sqlite3.OperationalError as exc:  # a full disk: complete all the same (``mark_scored``
                    log.debug("series %s: completion not recorded (%s)", st.series_key, exc)  # checks changes)
                log.debug("series %s complete (%s)", st.series_key, "expected count" if early else "quiet")
                st = replace(st, state="complete", completed_at=now)
            out.append(st)
        return out

    def begin_attempt(self, series_uid: str) -> int:
        """Count a scoring attempt before it starts (reset when scored); returns the attempts so far."""
        with self.db.transaction() as db:
            db.execute("UPDATE series SET attempts=attempts+1 WHERE series_uid=?", (series_uid,))
            row = db.execute("SELECT attempts FROM series WHERE series_uid=?", (series_uid,)).fetchone()
        return int(row[0]) if row else 0

    def end_attempt(self, series_uid: str) -> None:
        """An attempt that ended without saving a result (scored ahead, ``loop.ahead``): not a death."""
        with self.db.transaction() as db:
            db.execute("UPDATE series SET attempts=MAX(0, attempts-1) WHERE series_uid=?", (series_uid,))

    def next_deadline(self, upcoming: bool = False) -> float | None:
        """Seconds until the earliest open series goes quiet (None when nothing is open). ``upcoming``: only
        series not quiet yet (one past its quiet period but held, e.g. by a file still settling, is no
        moment to wake up for)."""
        now = self._clock()
        waits = [st.last_arrival + self._completion.quiet_for(st.modality) - now
                 for st in self._states("state IN ('open','reopened')")]
        if upcoming:
            waits = [w for w in waits if w > 0]
        return max(0.0, min(waits)) if waits else None

    def mark_scored(self, db: sqlite3.Connection, series_uid: str, generation: int,
                    changes: int | None = None) -> bool:
        """Inside the caller's transaction (with the result row): scored, unless its instances changed.

        With ``changes`` (the counter the result was computed at) the series may still read open (its
        completion could not be written: a full disk): what counts is that nothing changed since.
        """
        if changes is None:
            cur = db.execute("UPDATE series SET state='scored', scored_at=?, generation=generation+1, attempts=0 "
                             "WHERE series_uid=? AND state='complete' AND generation=?",
                             (self._clock(), series_uid, generation))
        else:
            cur = db.execute("UPDATE series SET state='scored', scored_at=?, generation=generation+1, attempts=0 "
                             "WHERE series_uid=? AND state IN ('complete','open','reopened') AND generation=? "
                             "AND changes=?", (self._clock(), series_uid, generation, changes))
        return cur.rowcount == 1

    def state(self, series_uid: str) -> SeriesState | None:
        found = self._states("series_uid=?", (series_uid,))
        return found[0] if found else None

    def open_states(self) -> list[SeriesState]:
        """Series still receiving files (or waiting for their quiet period), in the order they began."""
        return self._states("state IN ('open','reopened')")

    def all_states(self) -> list[SeriesState]:
        return self._states("1=1")

    def _states(self, where: str, args: tuple[object, ...] = ()) -> list[SeriesState]:
        rows = self.db.query(
            "SELECT series_uid, series_key, modality, state, instances, expected, first_arrival, last_arrival, "
            f"completed_at, generation, changes, attempts FROM series WHERE {where} ORDER BY first_arrival", args)
        return [SeriesState(*row) for row in rows]


def _known(row: FileRow | None, size: int, mtime_ns: int) -> bool:
    return row is not None and row[0] == size and row[1] == mtime_ns and row[2] in ("indexed", "skipped")


def _expected_count(record: InstanceRecord) -> int | None:
    """Instance count announced by the headers, when it can be trusted.

    ImagesInAcquisition counts the slices of one time point; a multi-time-point series announces
    NumberOfTemporalPositions too. An enhanced multi-frame object with all its frames is one file.
    """
    if record.images_in_acquisition and record.images_in_acquisition > 0 and not record.is_multiframe:
        return record.images_in_acquisition * max(1, record.number_of_temporal_positions or 1)
    return None
