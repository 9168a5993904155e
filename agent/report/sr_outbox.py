"""Every result as a DICOM SR in ``<state_dir>/sr/``, and to a PACS from an outbox table, exactly once.

API::

    outbox = SrOutbox(config.dicom.output, state_dir, db=lambda: agent.db,
                      records=lambda uid: agent.tracker.records(uid))
    outbox.on_result(result, result_id)   # the agent's on_result (its thread): a records snapshot, a wake-up
    with outbox:                          # or start() ... stop(): the worker thread
        agent.run(stop)
    outbox.needs_files(series_uid)        # True while a result of the series has no SR yet (spool keep)
    outbox.run_once()                     # one worker pass: (reports built, reports sent)
    pacs_destination(config)              # the PacsDestination of a DicomOutputConfig, or None

What gets a report: every result the agent stores (``results`` rows of origin ``scored``) whose decision
is ok, retake or unscored, created after the outbox first ran on this state DB (a site turning SRs on
does not get its whole history); skipped series get none. The worker finds them in the ``results``
table itself, so a result is not missed when ``on_result`` is not called for it (shown while the
database refused writes, or the process died between the commit and the callback); ``on_result`` only
wakes the worker and snapshots the instances the result was computed from. Results left unbuilt when
the agent stopped are built at the next start if they are younger than ``BACKLOG_S``.

Content (``agent/report/sr.py``): the result, the patient and study modules copied from one of the
source series' files (read header-only, never logged), every instance of the series as evidence, the
worst slice as an IMAGE reference (the result's ``worst_slice.index`` into ``plan_series(records)``).
The SR's SOP Instance UID derives from the result's uuid, so a report built or sent twice is the same
object. A superseding result (a re-opened series) gets a new report whose Predecessor Documents
Sequence names the latest earlier report of the series that was built.

Outbox (``sr_outbox`` in the state DB, ``OUTBOX_DDL``, created with CREATE ... IF NOT EXISTS): one row
per result uuid (UNIQUE) with the report's path and ``state``: ``pending`` (to send, at ``next_try``),
``sent``, ``failed`` (gave up after ``max_attempts``, refused for good, or no report could be built:
``last_error`` says which), ``local`` (written, no PACS configured), ``skipped`` (superseded before
its report was built). The worker sends due reports in one association per batch (``pacs.send_to``);
a failure backs off ``backoff_s * 2**(attempts-1)`` up to ``max_backoff_s``. A row is marked sent only
after the PACS answered success: a crash in between sends the same SOP instance again, which a PACS
stores once. Files stay in ``<state_dir>/sr/`` whatever happens to the send, for ``keep_h`` hours
(``prune``, every ``PRUNE_EVERY_S``): a report still to send is never deleted, nor one whose row is
younger than that; only ``*.dcm`` files (and stale ``.part`` files of a crash) are touched, and the rows
stay as the record of what was sent.

Threads: ``on_result`` runs on the agent's thread and does one read; building (~0.1 s for 300 instances)
and sending run on the worker, which never holds a database transaction across network I/O. The state
DB is taken from ``db`` at each pass (the agent replaces a corrupt one). Logs name series by
``series_key`` and files by count, never patient data or UIDs.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from mediqa import __version__
from mediqa.agent.config_dicom import DicomOutputConfig
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.report.pacs import NOT_ACCEPTED, PacsDestination, PacsError, send_to, status_ok
from mediqa.agent.report.sr_child import NoReport, SrBuilder
from mediqa.agent.report.sr_uids import sr_instance_uid
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.state.db import StateDB, db_path, path_from_db
from mediqa.errors import ConfigError

log = logging.getLogger(__name__)

SR_DECISIONS = ("ok", "retake", "unscored")
STATES = ("pending", "sent", "failed", "local", "skipped")
POLL_S = 5.0  # the worker looks for new results and due reports at least this often
BUILD_BATCH = 20
SEND_BATCH = 20
SNAPSHOTS_KEPT = 64
BACKLOG_S = 3600.0
COMPLAIN_EVERY_S = 60.0
PRUNE_EVERY_S = 300.0
SUPERSEDES_HOPS = 50
# Reports wait while the agent has files or series waiting (``busy``), at most this long after their result:
# an SR costs ~0.2 s of a core (highdicom), taken from the next series' score during a burst or backlog.
SR_DEFER_MAX_S = 30.0
DEFER_RECHECK_S = 0.5

OUTBOX_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS sr_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, result_uuid TEXT NOT NULL UNIQUE, series_uid TEXT NOT NULL,
    sr_uid TEXT NOT NULL, path BLOB NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL, last_error TEXT, created REAL NOT NULL, sent_at REAL
)""",
    "CREATE INDEX IF NOT EXISTS sr_outbox_due ON sr_outbox(next_try) WHERE state='pending'",
    "CREATE INDEX IF NOT EXISTS sr_outbox_series ON sr_outbox(series_uid)",
    "CREATE TABLE IF NOT EXISTS sr_outbox_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)",
)

DbSource = StateDB | Callable[[], StateDB]  # a callable: the agent's current one (it replaces a corrupt one)


def pacs_destination(config: DicomOutputConfig) -> PacsDestination | None:
    """Where ``config`` sends reports; None when no PACS is configured."""
    if not config.pacs_host:
        return None
    try:
        return PacsDestination(config.pacs_host, config.pacs_port, config.pacs_ae_title, config.calling_ae_title,
                               config.timeout_s)
    except PacsError as exc:
        raise ConfigError(f"dicom.output: {exc.args[0]}", exc.remedy) from None


class SrOutbox:
    """Builds quality SRs of new results and sends them to the PACS; see the module docstring."""

    def __init__(self, config: DicomOutputConfig, state_dir: str | os.PathLike[str], db: DbSource,
                 records: Callable[[str], list[InstanceRecord]], *, clock: Callable[[], float] = time.time,
                 poll_s: float = POLL_S, busy: Callable[[], bool] | None = None) -> None:
        self.config = config
        self.busy = busy  # the agent has work waiting (read from this thread: plain flags only)
        self.sr_dir = Path(state_dir) / "sr"
        self._db = db
        self._records = records
        self._clock = clock
        self.poll_s = poll_s
        self._dest = pacs_destination(config)
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, tuple[str, list[InstanceRecord]]] = OrderedDict()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._builder = SrBuilder()  # reports are built in a worker process (sr_child: no highdicom here)
        self._thread: threading.Thread | None = None
        self._started = clock()
        self._schema_db: StateDB | None = None
        self._since = self._started
        self._after_id = 0  # results up to this id were looked at (this database)
        self._next_due: float | None = None
        self._deferred_until: float | None = None  # reports held back by ``busy``: look again then
        self._last_complaint = float("-inf")
        self._failing = False
        self._last_prune = float("-inf")
        if config.sr:
            try:
                self._ready()
            except sqlite3.Error as exc:  # a full disk: the first pass creates it
                log.warning("SR outbox: the state database cannot be written yet (%s)", type(exc).__name__)

    @property
    def enabled(self) -> bool:
        return self.config.sr

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mediqa-sr-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker (a send in progress finishes first, within ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.config.timeout_s + 10)
            self._thread = None
        self._builder.close()

    def __enter__(self) -> SrOutbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            built = 0
            try:
                built, _ = self.run_once()
            except Exception as exc:  # noqa: BLE001 - the worker never dies: the next pass tries again
                self._complain(f"SR outbox pass failed ({type(exc).__name__}): tried again in {self.poll_s:g} s")
            if built >= BUILD_BATCH:
                continue  # a full batch: more are likely waiting (a backlog's reports came 20 every 5 s)
            wait = self.poll_s
            if self._next_due is not None:
                wait = min(wait, max(0.05, self._next_due - self._clock()))
            self._wake.wait(wait)

    # -- the agent's side -----------------------------------------------------------------------------
    def on_result(self, result: SeriesResult, result_id: int) -> None:
        """The agent's ``on_result``: remember the instances the result was computed from; wake the worker."""
        if not self.enabled:
            return
        try:
            if result_id > 0 and result is not None and result.decision in SR_DECISIONS:
                records = self._records(result.series_uid)
                with self._lock:
                    self._snapshots[result_id] = (result.series_uid, records)
                    while len(self._snapshots) > SNAPSHOTS_KEPT:
                        self._snapshots.popitem(last=False)
        except Exception as exc:  # noqa: BLE001 - the worker reads the records itself then
            log.debug("SR outbox: no snapshot of a result's instances (%s)", type(exc).__name__)
        self._wake.set()

    def pending(self) -> bool:
        """True while results shown in this run wait for their report to be built: each keeps its snapshot of
        instances until then (``_build_new`` drops those passed over). A plain read, from the loop's thread."""
        return bool(self._snapshots)

    def needs_files(self, series_uid: str) -> bool:
        """True while a result of the series waits for its report (its source files must stay)."""
        if not self.enabled:
            return False
        db = self._ready()  # the result row is committed before the series reads scored: no race
        row = db.query_one(
            "SELECT 1 FROM results r WHERE r.series_uid=? AND r.created>? AND r.origin='scored' AND r.decision IN "
            "('ok','retake','unscored') AND NOT EXISTS (SELECT 1 FROM sr_outbox o WHERE o.result_uuid=r.uuid) "
            "LIMIT 1", (series_uid, self._since))
        return row is not None

    # -- one pass -------------------------------------------------------------------------------------
    def run_once(self, now: float | None = None) -> tuple[int, int]:
        """Build the reports of new results, send the due ones; returns (built, sent)."""
        if not self.enabled:
            return 0, 0
        db = self._ready()
        now = self._clock() if now is None else now
        built = self._build_new(db, now)
        sent = self._send_due(db, now) if self._dest is not None else 0
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            self.prune(db, now)
        if self._thread is None:
            self._builder.close()  # a pass run by hand (a test, a tool) leaves no worker behind
        else:
            self._builder.close_if_idle()
        row = db.query_one("SELECT MIN(next_try) FROM sr_outbox WHERE state='pending'")
        self._next_due = None if row is None or row[0] is None else float(row[0])
        if self._deferred_until is not None:
            self._next_due = min(self._next_due or self._deferred_until, self._deferred_until)
            self._deferred_until = None
        return built, sent

    def prune(self, db: StateDB, now: float) -> int:
        """Delete report files older than ``keep_h`` whose row is neither pending nor that young."""
        if self.config.keep_h <= 0:
            return 0
        cutoff = now - self.config.keep_h * 3600.0
        try:
            entries = list(os.scandir(self.sr_dir))
        except FileNotFoundError:
            return 0
        keep = {os.path.basename(path_from_db(p)) for (p,) in db.query(
            "SELECT path FROM sr_outbox WHERE state='pending' OR created>=?", (cutoff,))}
        removed = 0
        for entry in entries:
            ours = entry.name.endswith(".dcm") or (entry.name.startswith(".") and entry.name.endswith(".part"))
            try:
                old = ours and entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff
            except OSError:
                continue
            if old and entry.name not in keep:
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError as exc:
                    log.debug("SR outbox: an old report not deleted (%s)", type(exc).__name__)
        if removed:
            log.info("SR outbox: %d report file(s) older than %g h deleted", removed, self.config.keep_h)
        return removed

    def _current(self) -> StateDB:
        return self._db() if callable(self._db) else self._db

    def _ready(self) -> StateDB:
        """The current state DB with the outbox tables (created once per database object)."""
        db = self._current()
        if db is not self._schema_db:
            with db.transaction() as c:
                for statement in OUTBOX_DDL:
                    c.execute(statement)
                c.execute("INSERT OR IGNORE INTO sr_outbox_meta (key, value) VALUES ('since', ?)", (self._started,))
                (first,) = c.execute("SELECT value FROM sr_outbox_meta WHERE key='since'").fetchone()
            self._since = max(float(first), self._started - BACKLOG_S)
            if self._schema_db is not None:  # the agent replaced a corrupt database: its ids start again
                with self._lock:
                    self._snapshots.clear()
            self._schema_db, self._after_id = db, 0
        return db

    def _build_new(self, db: StateDB, now: float) -> int:
        rows = db.query(
            "SELECT r.id, r.uuid, r.supersedes, r.series_uid, r.live, r.json, r.created FROM results r "
            "WHERE r.id>? AND r.created>? AND r.origin='scored' AND r.decision IN ('ok','retake','unscored') "
            "AND NOT EXISTS (SELECT 1 FROM sr_outbox o WHERE o.result_uuid=r.uuid) ORDER BY r.id LIMIT ?",
            (self._after_id, self._since, BUILD_BATCH))
        built = 0
        for rid, uuid, supersedes, series_uid, live, payload, created in rows:
            if self.busy is not None and now - float(created) < SR_DEFER_MAX_S and self.busy():
                self._deferred_until = now + DEFER_RECHECK_S  # this one and the younger ones, a moment later
                break
            with self._lock:
                snap = self._snapshots.pop(int(rid), None)
            if snap is not None and snap[0] != series_uid:  # an id of a database since replaced
                snap = None
            records = snap[1] if snap is not None else (self._records(series_uid) if live else None)
            result = dict(json.loads(payload), uuid=uuid, agent_version=__version__)
            result.pop("supersedes", None)  # the report replaced is found below (only one that was built)
            state, path, error = ("pending" if self._dest is not None else "local"), b"", None
            try:
                if records is None:
                    raise NoReport("superseded before its report was built")
                path = db_path(str(self._builder.build(result, records, self._replaces(db, supersedes), self.sr_dir)))
            except NoReport as why:
                state, error = ("skipped" if records is None else "failed"), str(why)
            except OSError as exc:  # the state dir's disk: this result and the rest wait for the next pass
                self._complain(f"SR outbox cannot write a report ({exc.strerror or type(exc).__name__})")
                break
            except Exception as exc:  # noqa: BLE001 - one result's bad header (or a worker that died) must not stop the others
                state, error = "failed", f"the report could not be built ({type(exc).__name__})"
            with db.transaction() as c:
                c.execute("INSERT OR IGNORE INTO sr_outbox (result_uuid, series_uid, sr_uid, path, state, attempts, "
                          "next_try, last_error, created) VALUES (?,?,?,?,?,0,?,?,?)",
                          (uuid, series_uid, sr_instance_uid(uuid), path, state, now, error, now))
            self._after_id = max(self._after_id, int(rid))
            if error is None:
                built += 1
                log.debug("SR outbox: report of series %s written (%s)", result.get("series_key", "?"), state)
            elif state == "failed":
                log.warning("SR outbox: no report for series %s: %s", result.get("series_key", "?"), error)
        with self._lock:  # snapshots of results passed over (made before the outbox started, not stored...)
            for rid in [k for k in self._snapshots if k <= self._after_id]:
                del self._snapshots[rid]
        return built

    @staticmethod
    def _replaces(db: StateDB, supersedes: str | None) -> str | None:
        """The SR UID of the nearest earlier result of the series whose report was built."""
        uuid, hops = supersedes, 0
        while uuid and hops < SUPERSEDES_HOPS:
            row = db.query_one("SELECT sr_uid, path FROM sr_outbox WHERE result_uuid=?", (uuid,))
            if row is not None and row[1]:
                return str(row[0])
            prev = db.query_one("SELECT supersedes FROM results WHERE uuid=?", (uuid,))
            uuid, hops = (prev[0] if prev else None), hops + 1
        return None

    def _send_due(self, db: StateDB, now: float) -> int:
        assert self._dest is not None
        rows = db.query("SELECT id, path, attempts FROM sr_outbox WHERE state='pending' AND next_try<=? "
                        "ORDER BY next_try, id LIMIT ?", (now, SEND_BATCH))
        if not rows:
            return 0
        gone = [(rid,) for rid, path, _ in rows if not os.path.isfile(path_from_db(path))]
        todo = [(int(rid), path_from_db(path), int(n)) for rid, path, n in rows
                if os.path.isfile(path_from_db(path))]
        statuses: list[int] = []
        error: str | None = None
        if todo:
            try:
                statuses = send_to(self._dest, [p for _, p, _ in todo])
            except PacsError as exc:
                statuses, error = exc.statuses, str(exc)
        sent, given_up = 0, 0
        with db.transaction() as c:
            c.executemany("UPDATE sr_outbox SET state='failed', last_error=? WHERE id=?",
                          [(f"the report file is gone from {self.sr_dir.name}/", rid) for (rid,) in gone])
            for k, (rid, _, attempts) in enumerate(todo):
                attempts += 1
                status = statuses[k] if k < len(statuses) else None
                if status is not None and status_ok(status):
                    c.execute("UPDATE sr_outbox SET state='sent', attempts=?, sent_at=?, last_error=NULL WHERE id=?",
                              (attempts, now, rid))
                    sent += 1
                    continue
                why = (error or "no answer") if status is None else f"the PACS answered status 0x{status:04X}"
                final = status == NOT_ACCEPTED or attempts >= self.config.max_attempts
                delay = min(self.config.backoff_s * 2 ** min(attempts - 1, 30), self.config.max_backoff_s)
                c.execute("UPDATE sr_outbox SET state=?, attempts=?, next_try=?, last_error=? WHERE id=?",
                          ("failed" if final else "pending", attempts, now + delay, why[:300], rid))
                given_up += final
        self._report(sent, len(todo) - sent, given_up + len(gone), error)
        return sent

    def _report(self, sent: int, unsent: int, given_up: int, error: str | None) -> None:
        where = f"{self._dest.called_ae}@{self._dest.host}:{self._dest.port}" if self._dest else "?"
        if sent:
            log.info("SR outbox: %d report(s) sent to PACS %s", sent, where)
        if given_up:
            log.error("SR outbox: %d report(s) not sent, given up (kept in %s/): see the sr_outbox table",
                      given_up, self.sr_dir)
        if unsent:
            if not self._failing:
                self._last_complaint = float("-inf")
            self._failing = True
            self._complain(f"SR outbox: {unsent} report(s) not sent to PACS {where} ({error or 'refused'}): "
                           "retried", logging.WARNING)
        elif sent and self._failing:
            self._failing = False
            log.info("SR outbox: PACS %s takes reports again", where)

    def _complain(self, text: str, level: int = logging.ERROR) -> None:
        now = time.monotonic()
        if now - self._last_complaint >= COMPLAIN_EVERY_S:
            self._last_complaint = now
            log.log(level, text)
        else:
            log.debug(text)


