"""Notifications: each live retake (and, if asked, each unscored series) sent once to every destination.

Destinations are apprise URLs in ``notify.destinations`` (desktop notifications, e-mail, Teams through
``workflows://``, Slack, JSON webhooks...); none configured means off, and apprise is not even imported.

The path of a notification::

    result row committed ---- enqueue(conn, saved, config) ----> notifications (state DB): one row per
      (same transaction, or right after)                          (result_uuid, destination), UNIQUE
                                                                            |
    Notifier thread, its own connection:  claim a due row (pending, or sending with its lease expired):
      sending + lease, attempts + 1  ->  send through apprise (no transaction held)  ->  sent, or pending
      again after a backoff (doubling from backoff_s, capped at 15 min), or failed after max_attempts

- **Once.** ``enqueue`` inserts with ``INSERT OR IGNORE`` on ``UNIQUE(result_uuid, destination)``: a
  restart that enqueues the same result again inserts nothing. A row is sent only after it was marked
  ``sending`` in a committed transaction, and marked ``sent`` right after the destination accepted it.
- **At least once, and its one edge.** A process killed after the destination accepted a message and
  before ``sent`` was committed leaves that row ``sending``: when its lease expires (``lease_s``, at
  least 60 s) the next notifier sends it again. That is the only duplicate possible, at most one message
  per kill (the one in flight); a receiver can tell by the result id in the body. No design removes it
  without the receiver's help: "accepted" and "recorded" are two machines' facts. A ``sent`` that cannot
  be written (a full disk) is kept in memory and written before anything else is claimed.
- **Superseded.** A row whose result is no longer live when it is due (the series re-opened and was
  scored again) is not sent: it becomes ``superseded``. The new result is enqueued in its own right if
  it is a retake; a retake superseded by ``ok`` needs no retake.
- **Never blocking scoring.** Sending happens in the notifier's thread, outside any transaction; its
  transactions are a few rows long, on its own connection with a busy timeout. Every row's failure is
  caught (it is that row's error); a failing pass is logged at most once a minute and tried again.
- **A failing destination** is probed once per backoff interval (one due message), not once per waiting
  message, and does not hold up other destinations. ``health()`` says which destination is failing.
- **No credentials** outside the config: the outbox names a destination by index and a slow hash of its
  URL; errors stored and logged are redacted (``notify_send``). ``${VAR}`` in a URL is read from the
  environment, so the config file need not hold the secret.

Rows of a destination removed from the config stay in the table, untouched, and are sent if it comes
back (same URL as written). ``next_try`` is wall-clock time (it must survive a restart); a row due
further ahead than any backoff or lease could set (the clock went back) is due now.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Protocol

from mediqa.agent.report.notify_send import REDACT, Destination, check_destination, compose, destination_key, scheme_of
from mediqa.agent.report.privacy import clean_text
from mediqa.agent.state.db import StateDB
from mediqa.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["DDL", "NotifyConfig", "NotifySettings", "Notifier", "destination_key", "enqueue", "ensure_table",
           "send_test_message"]

# The outbox, one statement each (folded into agent/state/db.py's SCHEMA by its owner later).
DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, result_uuid TEXT NOT NULL, destination TEXT NOT NULL,
    dest_index INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL, last_error TEXT, created REAL NOT NULL, sent_at REAL,
    UNIQUE (result_uuid, destination)
)""",
    "CREATE INDEX IF NOT EXISTS notifications_due ON notifications(next_try) WHERE state IN ('pending', 'sending')",
)
STATES = ("pending", "sending", "sent", "failed", "superseded")
MAX_BACKOFF_S = 900.0
COMPLAIN_EVERY_S = 60.0
SENT_BY = ("retake",)


class NotifySettings(Protocol):
    """What the notifier reads: ``NotifyConfig``, or ``AgentConfig.notify`` (a copy of that dataclass:
    ``agent/config.py`` cannot import this module, as ``agent.report`` imports ``agent.config`` and the
    architecture test forbids circles between the agent's units; ``NotifyConfig.of`` validates a copy)."""

    @property
    def destinations(self) -> tuple[str, ...]: ...
    @property
    def on_unscored(self) -> bool: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def backoff_s(self) -> float: ...
    @property
    def timeout_s(self) -> float: ...


@dataclass(frozen=True)
class NotifyConfig:
    """``notify:`` in the agent config. Validated when built: see ``check_destination``."""

    destinations: tuple[str, ...] = field(default=(), repr=False)  # apprise URLs; may hold credentials
    on_unscored: bool = False  # also send "could not be scored" (nobody checked that series)
    max_attempts: int = 20  # then the row is failed, logged once at ERROR (about 3 h with the defaults)
    backoff_s: float = 5.0  # first retry after this, doubling, capped at MAX_BACKOFF_S
    timeout_s: float = 10.0  # connect and read timeout of one send

    def __post_init__(self) -> None:
        object.__setattr__(self, "destinations", tuple(self.destinations))
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"notify.max_attempts must be at least 1, got {self.max_attempts!r}")
        for name in ("backoff_s", "timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"notify.{name} must be a positive number of seconds, got {value!r}")
        seen: dict[str, int] = {}
        for i, url in enumerate(self.destinations):
            check_destination(i, url)
            key = destination_key(url)
            if key in seen:
                raise ConfigError(f"notify.destinations[{i}] repeats notify.destinations[{seen[key]}]",
                                  "list each destination once")
            seen[key] = i

    @classmethod
    def of(cls, settings: NotifySettings) -> NotifyConfig:
        """``settings`` as a validated ``NotifyConfig`` (``ConfigError`` naming ``notify.<key>`` otherwise).

        Call it once at start on ``AgentConfig.notify`` (before the scorer is built, as a bad destination
        is a configuration error) and hand the result to ``enqueue`` and ``Notifier``."""
        if isinstance(settings, NotifyConfig):
            return settings
        return cls(destinations=tuple(settings.destinations), on_unscored=settings.on_unscored,
                   max_attempts=settings.max_attempts, backoff_s=settings.backoff_s, timeout_s=settings.timeout_s)

    def redacted(self) -> dict[str, Any]:
        """This section as ``AgentConfig.to_dict`` should show it (logged at start, printed by ``doctor``):
        each destination as its scheme, index and key, never the URL."""
        return {"destinations": [f"{scheme_of(u) or '?'}://<redacted> (destination {i}, {destination_key(u)})"
                                 for i, u in enumerate(self.destinations)],
                "on_unscored": self.on_unscored, "max_attempts": self.max_attempts, "backoff_s": self.backoff_s,
                "timeout_s": self.timeout_s}

    @property
    def decisions(self) -> tuple[str, ...]:
        return (*SENT_BY, "unscored") if self.on_unscored else SENT_BY

    def backoff(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure: backoff_s, doubling, capped."""
        return min(self.backoff_s * 2.0 ** min(max(attempts - 1, 0), 40), max(MAX_BACKOFF_S, self.backoff_s))


def ensure_table(db: StateDB | sqlite3.Connection) -> None:
    """Create the outbox if it is not there (idempotent; inside the caller's transaction for a connection)."""
    if isinstance(db, StateDB):
        with db.transaction() as conn:
            ensure_table(conn)
        return
    for statement in DDL:
        db.execute(statement)


def enqueue(db: StateDB | sqlite3.Connection, result: Any, config: NotifySettings,
            clock: Callable[[], float] = time.time) -> int:
    """Queue a committed result for every destination; returns how many rows were added.

    ``result`` is anything naming the result's uuid: the store's ``Saved``, a row dict (``uuid``), or the
    uuid itself; its decision and liveness are read from the database. Only a live, freshly scored
    (``origin='scored'``) retake, or unscored series with ``on_unscored``, is queued; results restored
    from results.jsonl or migrated are not (they were reported before). Idempotent.

    ``db`` is the agent's ``StateDB`` (a transaction of its own) or the ``sqlite3.Connection`` of the
    transaction that adds the result (recommended: then a crash cannot separate the two); inside it the
    rows are a savepoint. Never raises for its own reasons (logs at ERROR, returns 0); an error that
    ended the caller's transaction is re-raised, as the caller must know.
    """
    if not config.destinations:
        return 0
    key = _uuid_of(result)
    try:
        cfg = _validated(config)
    except ConfigError as exc:
        log.error("notification not queued: %s", exc)
        return 0
    if key is None:
        log.error("notification not queued: %s names no result uuid", type(result).__name__)
        return 0
    try:
        if isinstance(db, StateDB):
            with db.transaction() as conn:
                return _enqueue(conn, key, cfg, clock())
        db.execute("SAVEPOINT mediqa_notify")
        try:
            n = _enqueue(db, key, cfg, clock())
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK TO mediqa_notify")
                db.execute("RELEASE mediqa_notify")
            raise
        db.execute("RELEASE mediqa_notify")
        return n
    except sqlite3.Error as exc:
        if isinstance(db, sqlite3.Connection) and not db.in_transaction:
            raise
        log.error("notification of a result not queued: %s", clean_text(f"{type(exc).__name__}: {exc}", 160))
    except Exception as exc:  # noqa: BLE001 - a bug here must not cost the result its transaction
        log.error("notification of a result not queued: internal error (%s)", type(exc).__name__)
    return 0


def _validated(settings: NotifySettings) -> NotifyConfig:
    if isinstance(settings, NotifyConfig):
        return settings
    try:
        return _validated_copy(settings) if isinstance(settings, Hashable) else NotifyConfig.of(settings)
    except TypeError:  # a field that does not hash (a list): validated each time
        return NotifyConfig.of(settings)


@functools.lru_cache(maxsize=8)
def _validated_copy(settings: Hashable) -> NotifyConfig:
    return NotifyConfig.of(settings)  # type: ignore[arg-type]  # a NotifySettings that is hashable


def _uuid_of(result: Any) -> str | None:
    value = result if isinstance(result, str) else getattr(result, "uuid", None)
    if value is None and isinstance(result, Mapping):
        value = result.get("uuid")
    return value if isinstance(value, str) and value else None


def _enqueue(conn: sqlite3.Connection, key: str, config: NotifyConfig, now: float) -> int:
    ensure_table(conn)
    row = conn.execute("SELECT decision, live, origin FROM results WHERE uuid=?", (key,)).fetchone()
    if row is None or not row[1] or row[2] != "scored" or row[0] not in config.decisions:
        return 0
    added = 0
    for index, url in enumerate(config.destinations):
        cur = conn.execute("INSERT OR IGNORE INTO notifications (result_uuid, destination, dest_index, state, "
                           "attempts, next_try, created) VALUES (?,?,?,'pending',0,?,?)",
                           (key, destination_key(url), index, now, now))
        added += max(cur.rowcount, 0)
    return added


class _Claim(NamedTuple):
    row_id: int
    destination: Destination
    attempt: int
    lease: float
    result_id: int
    payload: str


class _Outcome(NamedTuple):
    claim: _Claim
    error: str | None
    at: float


class Notifier:
    """Sends due notifications in its own thread, on its own connection to the state database.

    ``db`` is the agent's ``StateDB`` (only its path is used) or the state file's path. ``start()``
    starts the thread (nothing when no destination is configured), ``stop()`` asks it to finish the send
    in flight and joins it; a context manager does both. ``wake()`` (after an ``enqueue``) saves waiting
    for the next poll. ``health()`` is None, or which destination is failing and why.
    """

    def __init__(self, db: StateDB | Path | str, config: NotifySettings, *, poll_s: float = 1.0,
                 busy_timeout_s: float = 5.0, lease_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = db.path if isinstance(db, StateDB) else Path(db)
        self.config: NotifyConfig = NotifyConfig.of(config)
        self.destinations = [Destination(i, url, self.config.timeout_s)
                             for i, url in enumerate(self.config.destinations)]
        self._by_key = {d.key: d for d in self.destinations}
        self.poll_s = poll_s
        self.busy_timeout_s = busy_timeout_s
        self.lease_s = lease_s if lease_s is not None else max(60.0, 4.0 * self.config.timeout_s)
        self.clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: StateDB | None = None
        self._identity: tuple[int, int] | None = None
        self._hold: dict[str, float] = {}  # destination key -> not probed again before
        self._streak: dict[str, int] = {}  # destination key -> failures in a row
        self._failing: dict[int, str] = {}  # destination index -> its last error
        self._unrecorded: list[_Outcome] = []
        self._last_complaint = -math.inf

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Notifier:
        if self.destinations and not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mediqa-notify", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join(timeout_s if timeout_s is not None else 2.0 * self.config.timeout_s + 5.0)
        if thread.is_alive():
            log.warning("notifications: a send is still in progress at stop; if the agent exits now, that one "
                        "message may be sent again after %g s at the next start", self.lease_s)

    def wake(self) -> None:
        self._wake.set()

    def __enter__(self) -> Notifier:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def health(self) -> str | None:
        failing = dict(self._failing)  # written by the thread
        if not failing:
            return None
        return "; ".join(f"notifications to destination {i} ({self.destinations[i].scheme}) failing: {err}"
                         for i, err in sorted(failing.items()))

    # --- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.run_once()
                except Exception as exc:  # noqa: BLE001 - never down: a failing pass is said, then tried again
                    self._complain(exc)
                if self._stop.is_set():
                    break
                self._wake.wait(self._next_wait())
                self._wake.clear()
        finally:
            self._close()

    def run_once(self) -> int:
        """Send every due row now (in the caller's thread when not started); returns how many were tried."""
        if not self._open():
            return 0
        self._record_unrecorded()
        tried = 0
        while not self._stop.is_set():
            claim = self._claim()
            if claim is None:
                break
            if not isinstance(claim, _Claim):  # a row settled without a send (superseded, given up)
                continue
            tried += 1
            self._finish(claim)
            if self._unrecorded:  # the database refused the outcome: nothing more until it is written
                break
        return tried

    def _open(self) -> bool:
        """The thread's own connection; opened again when the state file was replaced (moved aside)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._close()
            return False
        identity = (st.st_dev, st.st_ino)
        if self._db is not None and identity == self._identity:
            return True
        if self._db is not None:  # a new file (the old one moved aside): its rows are not the old rows
            self._unrecorded.clear()
        self._close()
        db = StateDB.open(self.path, timeout_s=self.busy_timeout_s)
        try:
            ensure_table(db)
        except BaseException:
            db.close()
            raise
        self._db, self._identity = db, identity
        return True

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _due_limit(self, now: float) -> float:
        """Rows due later than this were set by a clock that has since gone back: they are due now."""
        return now + max(MAX_BACKOFF_S, self.config.backoff_s, self.lease_s) + 60.0

    def _claim(self) -> _Claim | bool | None:
        """The next due row, marked ``sending`` with a lease (None: nothing due; True: a row was settled
        without a send)."""
        assert self._db is not None
        now = self.clock()
        keys = [k for k in self._by_key if self._hold.get(k, -math.inf) <= now]
        if not keys:
            return None
        marks = ",".join("?" * len(keys))
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT n.id, n.destination, n.attempts, r.id, r.live, r.json FROM notifications n "
                "LEFT JOIN results r ON r.uuid = n.result_uuid WHERE n.state IN ('pending', 'sending') AND "
                f"(n.next_try <= ? OR n.next_try > ?) AND n.destination IN ({marks}) ORDER BY n.next_try, n.id "
                "LIMIT 1", (now, self._due_limit(now), *keys)).fetchone()
            if row is None:
                return None
            row_id, key, attempts, result_id, live, payload = row
            if result_id is None or not live:
                state = "superseded" if result_id is not None else "failed"
                why = None if result_id is not None else "the result is not in the state database"
                conn.execute("UPDATE notifications SET state=?, last_error=COALESCE(?, last_error) WHERE id=?",
                             (state, why, row_id))
                log.info("notification %d not sent: its result is %s", row_id,
                         "superseded" if result_id is not None else "gone")
                return True
            if attempts >= self.config.max_attempts:  # e.g. a send that kept killing the agent
                conn.execute("UPDATE notifications SET state='failed' WHERE id=?", (row_id,))
                log.error("notification of result %d to %s: gave up after %d attempts", result_id,
                          self._by_key[key].label, attempts)
                return True
            lease = now + self.lease_s
            conn.execute("UPDATE notifications SET state='sending', attempts=?, next_try=? WHERE id=?",
                         (attempts + 1, lease, row_id))
        return _Claim(row_id, self._by_key[key], attempts + 1, lease, int(result_id), str(payload))

    def _finish(self, claim: _Claim) -> None:
        try:
            title, body, kind = compose(json.loads(claim.payload), claim.result_id)
            error = claim.destination.send(title, body, kind)
        except Exception as exc:  # noqa: BLE001 - a bad row is that row's failure
            error = clean_text(REDACT(f"internal error ({type(exc).__name__}: {exc})"), 300)
        outcome = _Outcome(claim, error, self.clock())
        self._note(outcome)
        try:
            self._record(outcome)
        except sqlite3.Error as exc:  # kept, and written before anything else is claimed
            self._unrecorded.append(outcome)
            self._complain(exc)

    def _note(self, outcome: _Outcome) -> None:
        """In memory: the destination's failure streak, its probe hold, its health; the log line."""
        claim, error, now = outcome
        dest = claim.destination
        if error is None:
            self._streak.pop(dest.key, None)
            self._hold.pop(dest.key, None)
            if self._failing.pop(dest.index, None) is not None:
                log.info("notifications to %s work again", dest.label)
            log.info("notification of result %d sent to %s", claim.result_id, dest.label)
            return
        streak = self._streak.get(dest.key, 0) + 1
        self._streak[dest.key] = streak
        self._hold[dest.key] = now + self.config.backoff(streak)
        self._failing[dest.index] = error
        if claim.attempt >= self.config.max_attempts:
            log.error("notification of result %d to %s: gave up after %d attempts (last: %s)", claim.result_id,
                      dest.label, claim.attempt, error)
        else:
            log.log(logging.WARNING if streak == 1 else logging.INFO,
                    "notification of result %d to %s failed (attempt %d of %d, next in %g s): %s", claim.result_id,
                    dest.label, claim.attempt, self.config.max_attempts, self.config.backoff(claim.attempt), error)

    def _record(self, outcome: _Outcome) -> None:
        assert self._db is not None
        claim, error, now = outcome
        with self._db.transaction() as conn:
            if error is None:
                cur = conn.execute("UPDATE notifications SET state='sent', sent_at=? WHERE id=? AND "
                                   "state='sending' AND next_try=?", (now, claim.row_id, claim.lease))
            else:
                final = claim.attempt >= self.config.max_attempts
                cur = conn.execute(
                    "UPDATE notifications SET state=?, next_try=?, last_error=? WHERE id=? AND state='sending' AND "
                    "next_try=?", ("failed" if final else "pending", now + (0.0 if final else
                                   self.config.backoff(claim.attempt)), error, claim.row_id, claim.lease))
        if cur.rowcount != 1:
            log.warning("notification %d was taken over by another notifier while it was sent", claim.row_id)

    def _record_unrecorded(self) -> None:
        while self._unrecorded:
            self._record(self._unrecorded[0])
            self._unrecorded.pop(0)

    def _next_wait(self) -> float:
        """Until a row can next be claimed (its ``next_try``, its destination's probe hold), at most ``poll_s``:
        rows enqueued meanwhile are found by the next poll, at once when ``wake()`` is called."""
        now = self.clock()
        if self._db is None or not self._by_key:
            return self.poll_s
        try:
            rows = self._db.query(
                "SELECT destination, MIN(next_try) FROM notifications WHERE state IN ('pending', 'sending') AND "
                f"destination IN ({','.join('?' * len(self._by_key))}) GROUP BY destination", tuple(self._by_key))
        except sqlite3.Error:
            return self.poll_s
        soonest = [max(float(t), self._hold.get(k, -math.inf)) for k, t in rows if t is not None]
        return min([self.poll_s, *(max(t - now, 0.005) for t in soonest)])

    def _complain(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_complaint >= COMPLAIN_EVERY_S:
            self._last_complaint = now
            log.error("notifications paused, retrying: %s", clean_text(REDACT(f"{type(exc).__name__}: {exc}"), 200))


def send_test_message(settings: NotifySettings, index: int) -> str | None:
    """Send a test message to one destination now (for IT: ``mediqa notify --test N``); None when accepted."""
    config = NotifyConfig.of(settings)
    if not 0 <= index < len(config.destinations):
        raise ConfigError(f"notify.destinations[{index}] does not exist",
                          f"{len(config.destinations)} destination(s) are configured")
    dest = Destination(index, config.destinations[index], config.timeout_s)
    return dest.send("MedIQA Edge test message", "This destination receives MedIQA Edge retake alerts.", "info")
