"""The agent's state database: one SQLite file, one connection, one lock, one versioned schema.

Everything the agent persists (series and their instances, the files seen, per-slice saliency,
results) lives in ``<state_dir>/state.sqlite``. This module is the only one that opens it: it sets
WAL and ``synchronous=NORMAL``, applies the schema, migrates an older one, and hands the same
``StateDB`` to the series tracker and the result store, which run their SQL through
``transaction()`` and ``query()`` and never through each other. A write that spans both (a result
row and its series' ``scored`` state) is one ``transaction()`` opened by whoever holds both: the agent.

The schema version is SQLite's ``PRAGMA user_version``. Version 0 is the unversioned schema of the
first releases (instance records pickled); version 1 stores records as JSON; version 2 stores file
paths bytes-safe (``BLOB`` of ``os.fsencode(path)``: a name that is not UTF-8 is stored like any other,
and reads back as the same ``str``), gives every result a stable ``uuid`` and records when it was shown
and written to results.jsonl, and keeps a content digest (crc32) per indexed file.

A database newer than this code is refused with a ``ConfigError`` that says what to do. One that is not
a database at all, or is corrupt, is refused too (``StateCorrupt``) unless the opener asks to recover
(the agent does, ``mediqa alerts`` does not): then it is moved aside, never deleted
(``state.sqlite.corrupt-<timestamp>``), and a new one is started, which the agent seeds from
results.jsonl so no old series is alerted twice.

Write failures (a full disk, an I/O error) are remembered (``write_failing``) so the agent can say it
is degraded and back off; ``is_corrupt`` tells a corrupt file from a full disk.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord, record_from_dict, record_to_json
from mediqa.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
STATE_FILE = "state.sqlite"

Row = tuple[Any, ...]


def db_path(path: str) -> bytes:
    """A file path as stored in the database: its bytes (``os.fsencode``), so any name can be bound."""
    return os.fsencode(path)


def path_from_db(value: bytes | str) -> str:
    """Inverse of ``db_path`` (a version-1 text value reads as itself)."""
    return os.fsdecode(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value)


# The current schema, one statement each (``executescript`` would commit an open transaction).
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, series_key TEXT NOT NULL, modality TEXT NOT NULL,
    state TEXT NOT NULL, instances INTEGER NOT NULL, expected INTEGER,
    first_arrival REAL NOT NULL, last_arrival REAL NOT NULL, completed_at REAL, scored_at REAL,
    generation INTEGER NOT NULL DEFAULT 0, changes INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path BLOB NOT NULL, record TEXT NOT NULL,
    arrived REAL NOT NULL, crc INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid)",
    """CREATE TABLE IF NOT EXISTS slice_saliency (
    path BLOB NOT NULL, frame INTEGER NOT NULL, tile INTEGER NOT NULL, series_uid TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (path, frame, tile)
)""",
    """CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, attempts INTEGER NOT NULL DEFAULT 0, series_uid TEXT, crc INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, series_key TEXT NOT NULL,
    generation INTEGER NOT NULL, created REAL NOT NULL, modality TEXT, score REAL, decision TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 1, superseded_by INTEGER, acknowledged_at REAL, acknowledged_by TEXT,
    json TEXT NOT NULL, uuid TEXT NOT NULL UNIQUE, supersedes TEXT, digest TEXT,
    origin TEXT NOT NULL DEFAULT 'scored', shown_at REAL, jsonl_at REAL
)""",
    "CREATE INDEX IF NOT EXISTS results_series ON results(series_uid)",
    "CREATE INDEX IF NOT EXISTS instances_path ON instances(path)",
    "CREATE INDEX IF NOT EXISTS files_series ON files(series_uid)",
    "CREATE INDEX IF NOT EXISTS results_unwritten ON results(id) WHERE jsonl_at IS NULL",
    "CREATE INDEX IF NOT EXISTS results_unshown ON results(id) WHERE shown_at IS NULL",
)

# Verbatim: the schema of version 1 (the starting point of the 1 -> 2 migration).
_V1_SCHEMA: tuple[str, ...] = (
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

_INSTANCES_V1 = _V1_SCHEMA[1].replace("IF NOT EXISTS instances", "instances_v1")

_REMEDY_ASIDE = ("move the state_dir aside (keep it: it holds the alert history) and start the agent again "
                 "to begin a fresh one")


class StateCorrupt(ConfigError):
    """The state file is not a database, or its pages are damaged (SQLite ``NOTADB`` / ``CORRUPT``)."""


_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)


def is_corrupt(exc: BaseException) -> bool:
    """True when ``exc`` says the database file itself is damaged (not full, not locked, not busy)."""
    if isinstance(exc, StateCorrupt):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


class StateDB:
    """The open state database. Thread-safe: one re-entrant lock around every statement.

    ``created`` is true when this open made a new, empty schema (a first start, or a start after the old
    file was lost or moved aside); ``recovered_from`` names
    the corrupt file moved aside by ``open(..., recover=True)``. ``write_failing`` holds the last write
    error (a full disk...) until a write commits again.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()
        self.created = False
        self.recovered_from: Path | None = None
        self.write_failing: str | None = None

    @classmethod
    def open(cls, path: Path, *, timeout_s: float = 30.0, recover: bool = False) -> StateDB:
        """Open (creating, or migrating in place) the state database at ``path``.

        Raises ``ConfigError`` when it is unreadable, was written by a newer agent, or stays locked by
        another process for ``timeout_s``; ``StateCorrupt`` when it is no database or damaged, unless
        ``recover``: then the file is moved aside (``move_aside``) and a new one is created.
        """
        try:
            return cls._open(path, timeout_s)
        except StateCorrupt:
            if not recover:
                raise
        aside = move_aside(path)
        log.error("state database %s is corrupt: moved aside to %s, starting a new one", path, aside.name)
        db = cls._open(path, timeout_s)
        db.recovered_from = aside
        return db

    @classmethod
    def _open(cls, path: Path, timeout_s: float) -> StateDB:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:  # a new state file is private from its first byte (-wal and -shm take its mode)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise _unreadable(path, exc) from None
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
            if is_corrupt(exc):
                raise _unreadable(path, exc, StateCorrupt) from None
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
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception), holding the lock.

        A database error on the way is remembered in ``write_failing`` (cleared by the next commit).
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    if self._conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    with suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                self.write_failing = f"{type(exc).__name__}: {exc}"
                raise
            self.write_failing = None

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Row]:
        """All rows of a read, fetched under the lock."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def query_one(self, sql: str, args: tuple[object, ...] = ()) -> Row | None:
        with self._lock:
            row: Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def make_private(self) -> None:
        """Owner-only modes on the state file and its -wal/-shm (files of older agents were 0644)."""
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot make the state file private: %s", exc.strerror or type(exc).__name__)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error as exc:  # a damaged file may refuse even the checkpoint on close
                log.debug("closing the state database: %s", exc)

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
                self.created = True
            else:
                for step in range(version, SCHEMA_VERSION):
                    log.info("migrating the state database from schema version %d to %d", step, step + 1)
                    _MIGRATIONS[step](db, self.path)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # inside the transaction: all or nothing


def move_aside(path: Path) -> Path:
    """Rename a damaged state file (and its -wal) to ``<name>.corrupt-<timestamp>``; never delete it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    if path.exists():
        os.replace(path, aside)
    if os.path.exists(f"{path}-wal"):
        os.replace(f"{path}-wal", f"{aside}-wal")
    with suppress(FileNotFoundError):
        os.unlink(f"{path}-shm")  # an index of the -wal, rebuilt from it: nothing to keep
    return aside


def _check_not_newer(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"state database {path} has schema version {version}, newer than this agent knows ({SCHEMA_VERSION}): "
            "it was written by a newer MedIQA Edge",
            f"run that newer version, or {_REMEDY_ASIDE}")


def _unreadable(path: Path, exc: BaseException, kind: type[ConfigError] = ConfigError) -> ConfigError:
    return kind(f"state database {path} cannot be read ({exc})",
                f"restore it from a backup, or {_REMEDY_ASIDE}; only the agent (mediqa watch) replaces a corrupt "
                "one, and it keeps the old file beside it")


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
    *_V1_SCHEMA[3:],  # slice_saliency, files and results were unchanged from version 0 to 1
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
    for statement in _V1_SCHEMA:
        db.execute(statement)
    log.info("state database: %d instance records rewritten as JSON", n)


def _recreate(db: sqlite3.Connection, table: str, create: str, columns: str, select: str) -> None:
    """Rebuild ``table`` with the current definition ``create``, copying ``select`` into ``columns``."""
    db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")  # its indexes go with it, and are dropped with it
    db.execute(create)
    db.execute(f"INSERT INTO {table} ({columns}) SELECT {select} FROM {table}_v1")
    db.execute(f"DROP TABLE {table}_v1")


def _v1_to_v2(db: sqlite3.Connection, path: Path) -> None:
    """Paths as bytes, result uuids, the change counter, the shown / written marks.

    Paths become ``CAST(path AS BLOB)``: the UTF-8 bytes of the text, i.e. ``os.fsencode`` of the name on
    a UTF-8 system (a version-1 file cannot hold any other name: binding one failed). Every result gets
    a fresh uuid; version-1 results count as shown (they were printed when they were made); whether
    their lines reached results.jsonl is settled by the store at the first flush (lines of version 1
    carry ids, not uuids). A superseding result names the uuid it supersedes.
    """
    db.create_function("mediqa_uuid4", 0, lambda: str(uuid.uuid4()))
    for column in ("changes", "attempts"):
        db.execute(f"ALTER TABLE series ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    _recreate(db, "files", SCHEMA[4], "path, size, mtime_ns, status, reason, attempts",
              "CAST(path AS BLOB), size, mtime_ns, status, reason, attempts")
    _recreate(db, "instances", SCHEMA[1], "sop_uid, series_uid, path, record, arrived",
              "sop_uid, series_uid, CAST(path AS BLOB), record, arrived")
    _recreate(db, "slice_saliency", SCHEMA[3], "path, frame, tile, series_uid, value",
              "CAST(path AS BLOB), frame, tile, series_uid, value")
    db.execute("UPDATE files SET series_uid=(SELECT i.series_uid FROM instances i WHERE i.path=files.path) "
               "WHERE status='indexed'")
    kept = ("id, series_uid, series_key, generation, created, modality, score, decision, live, superseded_by, "
            "acknowledged_at, acknowledged_by, json")
    _recreate(db, "results", SCHEMA[5], f"{kept}, uuid, origin, shown_at", f"{kept}, mediqa_uuid4(), 'v1', created")
    db.execute("UPDATE results SET supersedes=(SELECT old.uuid FROM results old WHERE old.superseded_by=results.id "
               "ORDER BY old.id DESC LIMIT 1)")
    for statement in SCHEMA:
        db.execute(statement)
    (n,) = db.execute("SELECT COUNT(*) FROM results").fetchone()
    log.info("state database: paths stored as bytes, %d results given a uuid", n)


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {0: _v0_to_v1, 1: _v1_to_v2}


def open_state(state_dir: Path, *, recover: bool = False) -> StateDB:
    """The state database of an agent's state dir (``recover``: move a corrupt one aside, start anew)."""
    return StateDB.open(state_dir / STATE_FILE, recover=recover)
