"""The agent's state database: one SQLite file, one connection, one lock, one versioned schema.

Everything the agent persists (series and their instances, the files seen, per-slice saliency,
results) lives in ``<state_dir>/state.sqlite``. This module is the only one that opens it: it sets
WAL and ``synchronous=NORMAL``, applies the schema, migrates an older one, and hands the same
``StateDB`` to the series tracker and the result store, which run their SQL through
``transaction()`` and ``query()`` and never through each other. A write that spans both (a result
row and its series' ``scored`` state) is one ``transaction()`` opened by whoever holds both: the agent.

The schema version is SQLite's ``PRAGMA user_version``. Version 0 is the unversioned schema of the
first releases (instance records pickled); version 1 stores records as JSON. A database newer than
this code, or one that is not a database at all, is refused with a ``ConfigError`` that says what to
do: it is never silently recreated, because it holds the alert history.
"""

from __future__ import annotations

import io
import logging
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord, record_from_dict, record_to_json
from mediqa.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STATE_FILE = "state.sqlite"

Row = tuple[Any, ...]

# The current schema, one statement each (``executescript`` would commit an open transaction).
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, series_key TEXT NOT NULL, modality TEXT NOT NULL,
    state TEXT NOT NULL, instances INTEGER NOT NULL, expected INTEGER,
    first_arrival REAL NOT NULL, last_arrival REAL NOT NULL, completed_at REAL, scored_at REAL,
    generation INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT NOT NULL, record TEXT NOT NULL,
    arrived REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid)",
    """CREATE TABLE IF NOT EXISTS slice_saliency (
    path TEXT NOT NULL, frame INTEGER NOT NULL, tile INTEGER NOT NULL, series_uid TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (path, frame, tile)
)""",
    """CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, attempts INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, series_key TEXT NOT NULL,
    generation INTEGER NOT NULL, created REAL NOT NULL, modality TEXT, score REAL, decision TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 1, superseded_by INTEGER, acknowledged_at REAL, acknowledged_by TEXT,
    json TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS results_series ON results(series_uid)",
)

_INSTANCES_V1 = SCHEMA[1].replace("IF NOT EXISTS instances", "instances_v1")

_REMEDY_ASIDE = ("move the state_dir aside (keep it: it holds the alert history) and start the agent again "
                 "to begin a fresh one")


class StateDB:
    """The open state database. Thread-safe: one re-entrant lock around every statement."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, *, timeout_s: float = 30.0) -> StateDB:
        """Open (creating, or migrating in place) the state database at ``path``.

        Raises ``ConfigError`` when it is unreadable, was written by a newer agent, or stays locked by
        another process for ``timeout_s``.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _unreadable(path, exc) from None
        db = cls(conn, path)
        try:
            version = db.version  # the first read: a file that is no database fails here
            _check_not_newer(path, version)  # before WAL: a newer agent's file is left exactly as it was
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if version < SCHEMA_VERSION:  # a current one is not even write-locked (``mediqa alerts`` beside the agent)
                db._upgrade()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise ConfigError(f"state database {path} is locked by another process",
                                  "another agent may be running on this state_dir: stop it, or give this one "
                                  "its own state_dir") from None
            if isinstance(exc, sqlite3.DatabaseError):
                raise _unreadable(path, exc) from None
            raise
        return db

    @property
    def version(self) -> int:
        row = self.query_one("PRAGMA user_version")
        return int(row[0]) if row else 0

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception), holding the lock."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Row]:
        """All rows of a read, fetched under the lock."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def query_one(self, sql: str, args: tuple[object, ...] = ()) -> Row | None:
        with self._lock:
            row: Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _upgrade(self) -> None:
        """Create the schema of a new file, or migrate an older one, in one transaction."""
        with self.transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])  # again: another process may have won
            _check_not_newer(self.path, version)
            if version == SCHEMA_VERSION:
                return
            if version == 0 and not db.execute("SELECT 1 FROM sqlite_master WHERE type='table'").fetchone():
                for statement in SCHEMA:  # a new file
                    db.execute(statement)
            else:
                for step in range(version, SCHEMA_VERSION):
                    log.info("migrating the state database from schema version %d to %d", step, step + 1)
                    _MIGRATIONS[step](db, self.path)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # inside the transaction: all or nothing


def _check_not_newer(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"state database {path} has schema version {version}, newer than this agent knows ({SCHEMA_VERSION}): "
            "it was written by a newer MedIQA Edge",
            f"run that newer version, or {_REMEDY_ASIDE}")


def _unreadable(path: Path, exc: BaseException) -> ConfigError:
    return ConfigError(f"state database {path} cannot be read ({exc})",
                       f"restore it from a backup, or {_REMEDY_ASIDE}; the agent never replaces it on its own")


# --- migrations: each takes the database at version N inside the open transaction to N+1 -------------

# The unversioned schema of the first releases, for version-0 files created before all of it existed.
_V0_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, series_key TEXT NOT NULL, modality TEXT NOT NULL,
    state TEXT NOT NULL, instances INTEGER NOT NULL, expected INTEGER,
    first_arrival REAL NOT NULL, last_arrival REAL NOT NULL, completed_at REAL, scored_at REAL,
    generation INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT NOT NULL, record BLOB NOT NULL,
    arrived REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid)",
    *SCHEMA[3:],  # slice_saliency, files and results are unchanged since version 0
)

_V0_PICKLED = {("mediqa.agent.dicom.records", "InstanceRecord"): InstanceRecord,
               ("mediqa.agent.dicom.records", "FrameGeometry"): FrameGeometry}


class _V0RecordUnpickler(pickle.Unpickler):
    """Resolves the two record classes and nothing else, so no pickle can reach a callable that runs code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _V0_PICKLED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not a record class") from None


def _v0_record_as_json(blob: bytes) -> str:
    """One pickled version-0 record, rewritten as JSON (fields it lacks take their defaults)."""
    obj = _V0RecordUnpickler(io.BytesIO(blob)).load()
    if not isinstance(obj, InstanceRecord):
        raise pickle.UnpicklingError(f"a {type(obj).__name__}, not an InstanceRecord")
    data = dict(vars(obj))  # its attributes as pickled: may hold the removed ``extra``, dropped here
    frames = data.get("frames", ())
    if not all(isinstance(f, FrameGeometry) for f in frames):
        raise pickle.UnpicklingError("frames that are not FrameGeometry")
    data["frames"] = [dict(vars(f)) for f in frames]
    return record_to_json(record_from_dict(data))


def _v0_to_v1(db: sqlite3.Connection, path: Path) -> None:
    """Pickled instance records -> JSON.

    This is the one place that unpickles, once per row, and it is acceptable here: the rows come only
    from the agent's own state file in its own state_dir (``StateDB.open`` is given no other path),
    written by earlier versions of this agent; anyone able to write that file could already change
    the agent's results; the unpickler resolves only the two record classes (a tampered row fails the
    migration instead of running code); and once the rows are rewritten as JSON and the version is
    set, nothing reads pickles again.
    """
    for statement in _V0_SCHEMA:
        db.execute(statement)
    db.execute(_INSTANCES_V1)
    rows = db.execute("SELECT sop_uid, series_uid, path, record, arrived FROM instances ORDER BY rowid")
    n = 0
    for n, (sop_uid, series_uid, file_path, blob, arrived) in enumerate(rows, 1):
        try:
            record = _v0_record_as_json(bytes(blob))
        except Exception as exc:  # noqa: BLE001 - any failure: abort the migration, roll back, explain
            raise ConfigError(
                f"state database {path}: instance record {n} cannot be migrated to JSON "
                f"({type(exc).__name__}: {exc})"[:300],
                f"nothing was changed; {_REMEDY_ASIDE}") from None
        db.execute("INSERT INTO instances_v1 VALUES (?,?,?,?,?)", (sop_uid, series_uid, file_path, record, arrived))
    db.execute("DROP TABLE instances")  # drops its index too
    db.execute("ALTER TABLE instances_v1 RENAME TO instances")
    for statement in SCHEMA:
        db.execute(statement)
    log.info("state database: %d instance records rewritten as JSON", n)


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {0: _v0_to_v1}


def open_state(state_dir: Path) -> StateDB:
    """The state database of an agent's state dir."""
    return StateDB.open(state_dir / STATE_FILE)
