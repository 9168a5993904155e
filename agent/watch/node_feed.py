"""Instances received by the DICOM node, fed to the agent like exported files; the spool kept tidy.

API::

    feed = NodeFeed(agent.events, node_config, spool_dir, db=lambda: agent.db,
                    keep=outbox.needs_files, export_folder=folder)
    with feed:                 # or feed.start() ... feed.stop(): the node and the housekeeping thread
        agent.run(stop)
    feed.address               # (host, port) the node listens on; None when node_config.listen is "off"
    feed.associations          # timings of the latest associations (AssociationTiming), newest last
    feed.housekeep(now)        # one housekeeping pass (the thread runs one every housekeeping_s)
    spool_path(config.dicom.spool_dir, state_dir)   # "" -> <state_dir>/dicom-spool

Intake. Every instance the node stores becomes ``PathEvent(path, closed=True)`` on the agent's queue
(the node calls back once the file is durable, so it is complete: no settling wait). ``start`` first
offers every file already in the spool that the agent has not finished reading (received before a
crash or a restart, whose events died with the process); every housekeeping pass does it again for
files the state DB does not know (an event lost to a failed callback). The agent ignores a file it has
already indexed in that version (size, mtime), so an offer too many costs one stat and one query.

Completion. Nothing is offered when an association ends: a series received in one association is due
when the agent's quiet period (``completion.quiet_period_s``) has passed since its last instance,
exactly as for exported files. docs/dicom.md has the measurement (the release follows the last
instance within milliseconds) and the hook a shorter, release-gated quiet period would need.

Housekeeping (read-only on the state DB: ``files`` joined with ``series``). A received file is *done*
when the agent indexed (or finally skipped) this version of it, its series is ``scored``, and
``keep(series_uid)`` is false (the SR outbox still needs a header of the series to build its report).
With ``keep_hours`` 0 a done file is deleted at the next pass; otherwise it is deleted once older than
``keep_hours`` (``DicomNode.prune`` with the done test). A file that is not done is never deleted: a
full spool makes the node answer 0xA700 (out of resources) and the sender keeps the images.
Nothing here logs a path or a patient attribute (spool names are hashes of SOP Instance UIDs anyway).
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from mediqa.agent.watch.dicom_node import AssociationInfo, DicomNode, DicomNodeConfig
from mediqa.agent.watch.watcher import PathEvent
from mediqa.errors import ConfigError

if TYPE_CHECKING:  # agent.state imports agent.dicom, which imports agent.watch: no import at run time
    from mediqa.agent.state.db import StateDB

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 10.0
TIMINGS_KEPT = 100
COMPLAIN_EVERY_S = 60.0
JOIN_TIMEOUT_S = 10.0
DONE_STATUSES = ("indexed", "skipped")

DbSource = Union["StateDB", Callable[[], "StateDB"]]  # a callable: the agent's current one (it replaces a corrupt one)


@dataclass(frozen=True)
class AssociationTiming:
    """When one association's instances arrived and when it ended (epoch seconds; no patient data)."""

    assoc_id: str
    calling_ae: str
    instances: int
    started: float
    first_instance: float | None
    last_instance: float | None
    released: float
    ended: str  # "released" or "aborted"
    max_gap_s: float  # the longest wait between two instances (or from the start to the first)

    @property
    def release_after_last_s(self) -> float | None:
        return None if self.last_instance is None else self.released - self.last_instance


@dataclass(frozen=True)
class Housekeeping:
    offered: int  # files offered to the agent again
    deleted: int  # done files deleted


@dataclass(frozen=True)
class _FileRow:
    size: int
    mtime_ns: int
    status: str
    series_uid: str | None
    series_state: str | None


def spool_path(configured: str, state_dir: Path) -> Path:
    """``dicom.spool_dir``: empty means ``<state_dir>/dicom-spool``; relative paths live in the state dir."""
    if not configured:
        return state_dir / "dicom-spool"
    path = Path(os.path.expandvars(os.path.expanduser(configured)))
    return path if path.is_absolute() else state_dir / path


class NodeFeed:
    """The DICOM node feeding ``events`` (the agent's queue), and its spool housekeeping; see the module docstring."""

    def __init__(self, events: queue.SimpleQueue[PathEvent], config: DicomNodeConfig, spool_dir: str | os.PathLike[str],
                 db: DbSource, *, keep: Callable[[str], bool] | None = None,
                 housekeeping_s: float = HOUSEKEEPING_S, export_folder: str | os.PathLike[str] | None = None) -> None:
        spool = Path(spool_dir).expanduser().resolve()
        if export_folder is not None:
            export = Path(export_folder).resolve()
            if spool == export or export in spool.parents or spool in export.parents:
                raise ConfigError(f"the DICOM spool folder {spool} overlaps the export folder",
                                  "choose a spool folder outside the export (the default is in the state dir)")
        self.events = events
        self.config = config
        self.spool_dir = spool
        self._db = db
        self._keep = keep
        self.housekeeping_s = housekeeping_s
        self.node = DicomNode(config, spool, self._on_instance, self._on_released)
        self.associations: deque[AssociationTiming] = deque(maxlen=TIMINGS_KEPT)
        self._lock = threading.Lock()
        self._open: dict[str, tuple[float | None, float | None, float]] = {}  # assoc_id -> first, last, max gap
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_complaint = float("-inf")

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the node, offer what the spool already holds, then housekeep every ``housekeeping_s``."""
        if self.config.endpoint is None or self.node.address is not None:
            return
        self.node.start()
        report = self._pass(time.time(), first=True)
        if report.offered:
            log.info("DICOM spool: %d file(s) received before this start offered to the agent", report.offered)
        if self.housekeeping_s > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="mediqa-node-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the housekeeping thread and the node (which aborts open associations and joins its threads)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None
        self.node.stop()

    def __enter__(self) -> NodeFeed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int] | None:
        return self.node.address

    def open_folders(self) -> set[Path]:
        """Spool folders of the associations open now (one folder per association)."""
        return self.node.open_folders()

    # -- the node's callbacks (association threads) -------------------------------------------------
    def _on_instance(self, path: str, info: AssociationInfo) -> None:
        self.events.put(PathEvent(path, closed=True))
        now = time.time()
        with self._lock:
            first, last, gap = self._open.get(info.assoc_id, (None, None, 0.0))
            gap = max(gap, now - (last if last is not None else info.started))
            self._open[info.assoc_id] = (now if first is None else first, now, gap)

    def _on_released(self, info: AssociationInfo) -> None:
        """Nothing to offer: the series' quiet period runs from its last instance (see the module docstring)."""
        now = time.time()
        with self._lock:
            first, last, gap = self._open.pop(info.assoc_id, (None, None, 0.0))
            timing = AssociationTiming(info.assoc_id, info.calling_ae, info.instances, info.started, first, last,
                                       now, info.ended, gap)
            self.associations.append(timing)
        if timing.last_instance is not None:
            log.debug("DICOM association %s %s %.1f ms after its last instance (%d instances, longest gap %.1f ms)",
                      info.assoc_id, info.ended, 1000 * (now - timing.last_instance), info.instances, 1000 * gap)

    # -- housekeeping -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.housekeeping_s):
            try:
                self._pass(time.time())
            except Exception as exc:  # noqa: BLE001 - housekeeping must never stop the node
                self._complain(f"DICOM spool housekeeping failed ({type(exc).__name__}): tried again later")

    def housekeep(self, now: float | None = None) -> Housekeeping:
        """One pass: offer the files the agent does not know, delete the done ones (see the module docstring)."""
        return self._pass(time.time() if now is None else now)

    def _pass(self, now: float, first: bool = False) -> Housekeeping:
        files = self.node.spooled_files()
        try:
            rows = self._rows()
        except (sqlite3.Error, AttributeError) as exc:  # degraded, closed or being rebuilt: next pass
            self._complain(f"DICOM spool housekeeping cannot read the state database ({type(exc).__name__})")
            return Housekeeping(0, 0)
        offered = 0
        for path in files:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            row = rows.get(str(path))
            same = row is not None and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
            if same and row is not None and (row.status in DONE_STATUSES or (row.status == "retry" and not first)):
                continue  # read (or being retried by the agent, which holds it since it started)
            self.events.put(PathEvent(str(path), closed=True))
            offered += 1
        keeps: dict[str, bool] = {}

        def done(path: Path) -> bool:
            row = rows.get(str(path))
            if row is None or row.status not in DONE_STATUSES:
                return False
            try:
                st = path.stat()
            except FileNotFoundError:
                return False
            if (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns):
                return False  # a newer version the agent has not read
            uid = row.series_uid
            if uid is None:
                return True
            if row.series_state != "scored":
                return False
            if uid not in keeps:
                keeps[uid] = self._kept(uid)
            return not keeps[uid]

        if self.config.keep_hours == 0:
            deleted = sum(self.node.release(path) for path in files if done(path))
            self.node.prune(now)  # keep_hours 0: deletes no file, only the empty folders of ended associations
        else:
            deleted = self.node.prune(now, done)
        if deleted:
            log.debug("DICOM spool: %d scored file(s) deleted, %d bytes held", deleted, self.node.used_bytes)
        return Housekeeping(offered, deleted)

    def _kept(self, series_uid: str) -> bool:
        if self._keep is None:
            return False
        try:
            return bool(self._keep(series_uid))
        except Exception as exc:  # noqa: BLE001 - when in doubt, keep the file
            self._complain(f"DICOM spool: cannot tell whether a series' files are still needed ({type(exc).__name__})")
            return True

    def _rows(self) -> dict[str, _FileRow]:
        """The state DB's rows for files under the spool (a range scan of the ``files`` primary key)."""
        db = self._db() if callable(self._db) else self._db
        low = os.fsencode(str(self.spool_dir) + os.sep)  # paths are stored as os.fsencode bytes (state.db.db_path)
        high = low[:-1] + bytes([low[-1] + 1])
        found = db.query("SELECT f.path, f.size, f.mtime_ns, f.status, f.series_uid, s.state FROM files f "
                         "LEFT JOIN series s ON s.series_uid = f.series_uid WHERE f.path >= ? AND f.path < ?",
                         (low, high))
        return {(p if isinstance(p, str) else os.fsdecode(bytes(p))): _FileRow(int(n), int(mtime), str(status), uid, st)
                for p, n, mtime, status, uid, st in found}

    def _complain(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_complaint >= COMPLAIN_EVERY_S:
            self._last_complaint = now
            log.error(text)
        else:
            log.debug(text)
