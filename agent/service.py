"""The agent loop: events -> ready files -> indexed instances -> complete series -> results.

Single-threaded on purpose: watchdog's thread only enqueues paths; this loop owns the tracker,
the clock and the scorer, so ordering is simple and a restart resumes from the database.

Never down. A file that makes the reader raise is a final skip ``internal: <type>``, a series that makes
scoring raise gets an ``unscored`` result; both are in the database, so a restart does not meet them
again. A series that killed the process while it was being scored (a crash no ``except`` catches) is
tried ``MAX_SCORING_ATTEMPTS`` times, then reported unscored. A state database that cannot be written
(a full disk) makes the agent degraded (``health``), not stopped: it keeps watching, shows each result
at once, keeps it in memory and writes it (row, results.jsonl line) when the database accepts writes
again; stopped before that, those series are still complete-but-unscored in the database and are scored
(and shown) again at the next start. A corrupt database is moved aside and rebuilt: the export folder is
indexed again, and results.jsonl seeds the history, so a series already reported and unchanged is
recorded as history, never alerted again.

Never wrong-and-live. A series is not due while files are pending (settling, or not yet indexed) in a
folder holding its files, before the first rescan after a start has seen the backlog, within a quiet
period after a start (what arrived while it was stopped is unknown), or while one of its files changed
since it was read (it is read again). A file whose content (crc32, read once at indexing) changes after
scoring re-opens its series; the new result supersedes the old one.

Never silent. Every complete series gets one live result: ok, retake, unscored (why), skipped (why).
Problems are logged at ERROR at most once a minute (``COMPLAIN_EVERY_S``). Files are named in logs only
by ``PathLabels``; tracebacks are scrubbed of export paths, and while ``run`` runs a ``PathScrubber`` sits
on the root logger's handlers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from mediqa.agent.config import AgentConfig
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord, record_to_json
from mediqa.agent.pipeline import analyse_series, unscored_result
from mediqa.agent.report.privacy import PathLabels, PathScrubber, clean_text
from mediqa.agent.report.store import ResultStore, jsonl_path
from mediqa.agent.scoring.base import Scorer, SeriesResult
from mediqa.agent.series.tracker import FILTER_REASONS, FileOutcome, SeriesState, SeriesTracker
from mediqa.agent.state.db import StateDB, is_corrupt, move_aside, open_state
from mediqa.agent.watch.settle import Settler
from mediqa.agent.watch.walk import walk_files
from mediqa.agent.watch.watcher import FolderWatcher, PathEvent
from mediqa.errors import ConfigError, DicomSkip, MediqaError

log = logging.getLogger(__name__)

ResultCallback = Callable[[SeriesResult, int], None]  # result id 0: shown before it could be stored

MAX_SCORING_ATTEMPTS = 3  # scoring attempts a series may cost (the process died each time), then unscored
WRITE_RETRY_S = 5.0  # after a failed write, writes wait this long before they are tried again
COMPLAIN_EVERY_S = 60.0  # at most one ERROR line about a degraded agent per minute
WATCHER_RETRY_S = 30.0
REBUILD_MIN_INTERVAL_S = 60.0  # a database that keeps rotting is not rebuilt on every pass
FIRST_SEEN_MAX = 20000  # paths whose first sighting is remembered (bounded memory)
SKIPPED_KEPT = 1000  # ``Agent.skipped``: the latest skipped files and why




@dataclass(frozen=True)
class Health:
    """``ok``, or ``degraded`` with the reasons (the agent keeps watching either way)."""

    status: str
    reasons: tuple[str, ...] = ()


@dataclass
class _Unsaved:
    """A result shown but not yet stored (the database refused the write)."""

    result: SeriesResult
    state: SeriesState
    digest: str
    shown_at: float | None


def check_paths(config: AgentConfig, folder: Path) -> None:
    """The agent writes only to its state dir, results.jsonl and the engine cache: none inside the export."""
    root = folder.resolve()
    for what, path in (("state_dir", config.state_path), ("report.jsonl", jsonl_path(config)),
                       ("scoring.engine_cache", config.engine_cache_path)):
        resolved = path.resolve()
        if resolved == root or root in resolved.parents:
            raise ConfigError(f"{what} {resolved} is inside the export folder",
                              "the agent never writes there: choose a place elsewhere")


class Agent:
    def __init__(self, config: AgentConfig, scorer: Scorer, folder: Path, *, clock: Callable[[], float] = time.time,
                 on_result: ResultCallback | None = None) -> None:
        self.config = config
        self.folder = folder.resolve()
        check_paths(config, self.folder)
        self.scorer = scorer
        self.clock = clock
        self.on_result = on_result
        self.labels = PathLabels(self.folder, config.report.log_paths)
        self._scrubber = PathScrubber([str(self.folder)])
        self.state_dir = config.state_path.resolve()
        self.events: queue.Queue[PathEvent] = queue.Queue()
        self.settler = Settler(config.watch.file_stable_s, clock)  # files seen, not yet stable
        self._saliency_todo: deque[InstanceRecord] = deque()  # filled as instances arrive, drained when idle
        self._last_reconcile = float("-inf")
        self.skipped: dict[str, str] = {}
        # what keeps series from being scored early: files pending per folder, and when each was first seen
        self._pending: dict[str, set[str]] = {}
        self._first_seen: dict[str, float] = {}
        self._hold_cap = max(300.0, 30.0 * max([*config.completion.quiet_period_s.values(), 1.0]))
        self._unsaved: dict[str, _Unsaved] = {}
        self._problems: dict[str, str] = {}
        self._failed: set[str] = set()  # problems raised during the current pass
        self._last_complaint = float("-inf")
        self._writes_paused_until = float("-inf")
        self._tracebacks: dict[str, float] = {}
        self._unlistable: set[str] = set()  # folders the last rescan could not list (labels)
        self._watcher_retry_at = float("-inf")
        self._rebuilt_at: float | None = None
        self._rebuilding = False
        self._late_shown = False
        _private_dir(self.state_dir)
        self._open_state()

    # --- the state database --------------------------------------------------------------------
    def _open_state(self) -> None:
        """Open the state database (a corrupt one is moved aside); a new one is seeded from results.jsonl."""
        db = open_state(self.state_dir, recover=True)
        db.make_private()
        self.db: StateDB = db
        self.tracker = SeriesTracker(db, self.config.completion, self.clock)
        self.store = ResultStore(db, jsonl_path(self.config), self.clock)
        self._started_at = self.clock()  # open series wait a quiet period after this
        self._scan_done = False  # nothing is due before a rescan has seen the backlog
        # A database without results beside a results.jsonl that has some (the old one lost, moved aside as
        # corrupt, or recreated empty by ``mediqa alerts``): the history comes back from the file first.
        jsonl = self.store.jsonl_path
        self._seeded = not (jsonl.exists() and jsonl.stat().st_size > 0 and self.store.empty())
        if db.recovered_from is not None:
            self._rebuilt(db.recovered_from)
        with self._guard("restoring the history from results.jsonl", "state"):
            self._seed()
        with self._guard("writing results.jsonl", "jsonl"):
            self.store.repair_torn_tail()
            self._flush_jsonl()

    def _seed(self) -> None:
        if not self._seeded:
            self.store.seed_from_jsonl()
            self._seeded = True

    def _rebuilt(self, aside: Path) -> None:
        self._rebuilt_at = self.clock()
        self._rebuilding = True
        self._problem("rebuilt", f"the state database was corrupt: kept as {aside.name}, rebuilt from the export "
                                 "folder and results.jsonl")

    def _recover_corrupt(self, exc: BaseException, move: bool = True) -> None:
        """Move the corrupt database aside (``move``) and start a new one, seeded from results.jsonl."""
        now = self.clock()
        if self._rebuilt_at is not None and now - self._rebuilt_at < REBUILD_MIN_INTERVAL_S:
            self._pause_writes()
            self._problem("state", f"the state database keeps failing ({clean_text(str(exc), 80)})")
            return
        self._rebuilt_at = now
        path = self.db.path
        self.db.close()
        aside = None
        if move:
            log.error("the state database is corrupt (%s): moving it aside and rebuilding it",
                      clean_text(str(exc), 80))
            aside = move_aside(path)
        self._saliency_todo.clear()
        self._unsaved.clear()  # their series are unknown to a new database: they are scored again
        self._last_reconcile = float("-inf")
        try:
            self._open_state()
        except Exception as again:  # noqa: BLE001 - e.g. locked by another process: try again later
            self._pause_writes()
            self._problem("state", f"the state database cannot be opened again ({type(again).__name__})")
            return
        if aside is not None:
            self._rebuilt(aside)

    def close(self) -> None:
        """Close the state database (``run`` does not: a stopped agent may still be asked questions)."""
        self.db.close()

    def _writable(self) -> bool:
        return self.clock() >= self._writes_paused_until

    def _pause_writes(self) -> None:
        self._writes_paused_until = self.clock() + WRITE_RETRY_S

    @contextmanager
    def _guard(self, what: str, key: str) -> Iterator[None]:
        """One phase of a pass: a database or internal error becomes a problem, never the loop's end."""
        try:
            yield
        except sqlite3.Error as exc:
            if is_corrupt(exc):
                self._recover_corrupt(exc)
                return
            if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
                self._recover_corrupt(exc, move=False)  # a rebuild that could not open the new file
                return
            self._pause_writes()
            self._problem("state", f"the state database cannot be written ({clean_text(str(exc), 80)}): results are "
                                   "shown, kept in memory and written when it can")
        except OSError as exc:
            self._problem(key, f"{what} failed ({exc.strerror or type(exc).__name__})")
        except Exception as exc:  # noqa: BLE001 - never down: a bug in one phase is reported, the loop goes on
            self._internal_error(what, exc)
            self._problem(key, f"internal error while {what} ({type(exc).__name__})")

    # --- health --------------------------------------------------------------------------------
    def health(self) -> Health:
        """``ok``, or ``degraded`` and why (the database, results.jsonl, the watcher, a rebuild...)."""
        reasons = list(self._problems.values())
        if self._unsaved:
            reasons.append(f"{len(self._unsaved)} result(s) shown but not yet stored")
        return Health("degraded" if reasons else "ok", tuple(reasons))

    def _problem(self, key: str, text: str) -> None:
        self._problems[key] = text
        self._failed.add(key)
        now = self.clock()
        if now - self._last_complaint >= COMPLAIN_EVERY_S:
            self._last_complaint = now
            log.error("degraded, still watching: %s", "; ".join(self.health().reasons))

    def _resolved(self, key: str) -> None:
        text = self._problems.pop(key, None)
        if text is not None:
            log.info("recovered: %s", text.split(":")[0])

    def _update_health(self) -> None:
        now = self.clock()
        for key in ("loop", "intake", "scoring", "saliency", "jsonl"):
            if key not in self._failed:
                self._resolved(key)
        if "state" not in self._failed and not self._unsaved and now >= self._writes_paused_until \
                and self.db.write_failing is None and self._seeded:
            self._resolved("state")
        if self._rebuilding and self._scan_done and not self.settler and not self._unsaved:
            self._rebuilding = False
            self._resolved("rebuilt")

    def _internal_error(self, what: str, exc: BaseException) -> None:
        """A bug met while ``what``: its traceback (once a minute per type, export paths scrubbed)."""
        name = type(exc).__name__
        now = self.clock()
        if now - self._tracebacks.get(name, float("-inf")) >= COMPLAIN_EVERY_S:
            self._tracebacks[name] = now
            text = self._scrubber.scrub("".join(traceback.format_exception(exc)).rstrip())
            log.error("internal error while %s (%s): recorded, the agent goes on\n%s", what, name, text)
        else:
            log.warning("internal error while %s (%s): recorded, the agent goes on", what, name)

    # --- intake --------------------------------------------------------------------------------
    def offer(self, path: str, closed: bool = False) -> None:
        """A path may hold a new or changed file: remember it until it is stable, then parse it."""
        try:
            st = os.stat(path)
        except OSError:
            return  # gone again (a temp file renamed away)
        if not stat.S_ISREG(st.st_mode) or self.tracker.file_known(path, st.st_size, st.st_mtime_ns):
            return
        self._observe(path, st, closed)

    def _observe(self, path: str, st: os.stat_result, closed: bool = False) -> None:
        self.settler.observe(path, st.st_size, st.st_mtime_ns, closed)
        self._pending.setdefault(os.path.dirname(path), set()).add(path)
        if path not in self._first_seen:
            if len(self._first_seen) >= FIRST_SEEN_MAX:
                del self._first_seen[next(iter(self._first_seen))]
            self._first_seen[path] = self.clock()

    def _done(self, path: str, indexed: bool) -> None:
        self.settler.done(path)
        folder = self._pending.get(os.path.dirname(path))
        if folder is not None:
            folder.discard(path)
        if indexed:
            self._first_seen.pop(path, None)  # a skipped one keeps it: a file that keeps changing stops holding

    def reconcile(self) -> int:
        """Walk the whole export folder; enqueue files the events missed. Returns how many were new."""
        before = len(self.settler)
        self._unlistable = set()
        with self._guard("rescanning the export folder", "intake"):
            try:
                for path in self._walk_from(self.folder):
                    self.offer(path)
            finally:
                self._last_reconcile = self.clock()
                self._scan_done = True
        if self._unlistable:
            self._problem("walk", f"{len(self._unlistable)} folder(s) of the export cannot be listed (e.g. "
                                  f"{min(self._unlistable)}): their files are not seen")
        else:
            self._resolved("walk")
        return len(self.settler) - before

    def _walk_from(self, root: str | os.PathLike[str]) -> Iterator[str]:
        """The one walk, with the export root's depth and link rules (a rescanned subfolder too)."""
        watch = self.config.watch
        return walk_files(root, max_depth=watch.max_depth, follow_links=watch.follow_links,
                          on_problem=self._walk_problem, within=self.folder)

    def _walk_problem(self, kind: str, rel_path: str) -> None:
        """A folder the walk could not list (the walk logs it once, by label): kept for ``health``."""
        if kind == "unreadable" and len(self._unlistable) < 1000:
            self._unlistable.add(self.labels.label(os.path.join(self.folder, rel_path)))

    def _drain(self, timeout: float) -> None:
        try:
            event = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return
        while True:
            if event.rescan:
                for path in self._walk_from(event.path):
                    self.offer(path)
            else:
                self.offer(event.path, event.closed)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _index_ready(self) -> None:
        """Read every stable file, record the batch in one transaction.

        A database error leaves the whole batch pending (read again once writes work); a file that
        changed while it was read waits a new window.
        """
        batch: list[FileOutcome] = []
        for path, st in self.settler.ready():  # files inside their quiet window are not even stat'ed
            out = self._read(path, st)
            if out.status == "again":
                self.settler.again(path, out.size, out.mtime_ns)
            else:
                batch.append(out)
        if not batch:
            return
        self.tracker.apply(batch, self.config.ingest.max_retries)
        fresh: list[InstanceRecord] = []
        for out in batch:
            if out.status == "retry":
                self.settler.again(out.path, out.size, out.mtime_ns)
                log.debug("not ready yet (%s, try %d): %s", out.reason, out.attempts, self.labels.label(out.path))
                continue
            self._done(out.path, indexed=out.status != "skipped")
            if out.status == "skipped":
                if len(self.skipped) >= SKIPPED_KEPT:  # the latest skips, for a look (bounded memory)
                    del self.skipped[next(iter(self.skipped))]
                self.skipped[out.path] = out.reason
                log.info("skipped %s: %s", self.labels.label(out.path),
                         clean_text(f"{out.reason}: {out.detail}" if out.detail else out.reason, 160))
            elif out.status in ("new", "changed") and out.record is not None:
                fresh.append(out.record)
        if fresh and self.config.scoring.selection == "salient":
            self._saliency_todo.extend(fresh)

    def _read(self, path: str, st: os.stat_result) -> FileOutcome:
        """Header and content digest of a stable file, or why not (never raises for the file's sake)."""
        ingest = self.config.ingest
        out = FileOutcome(path, st.st_size, st.st_mtime_ns)
        try:
            record = read_header(path, skip_derived=ingest.skip_derived, skip_localizers=ingest.skip_localizers,
                                 limits=ingest.limits)
        except DicomSkip as skip:
            out.reason, out.detail, out.retry, out.series_uid = skip.reason, skip.detail, skip.retry, skip.series_uid
            return out
        except Exception as exc:  # noqa: BLE001 - a poison file is a recorded skip, never the loop's end
            self._internal_error(f"reading {self.labels.label(path)}", exc)
            out.reason = f"internal: {type(exc).__name__}"
            return out
        try:
            crc, length = file_crc32(path)
            after = os.stat(path)
            if length != st.st_size or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                out.status, out.size, out.mtime_ns = "again", after.st_size, after.st_mtime_ns
                return out
            out.record, out.record_json, out.crc = record, record_to_json(record), crc
        except OSError as exc:
            out.reason, out.detail, out.retry = "unreadable", exc.strerror or type(exc).__name__, True
        except Exception as exc:  # noqa: BLE001 - e.g. a header value that cannot be stored
            self._internal_error(f"recording {self.labels.label(path)}", exc)
            out.reason = f"internal: {type(exc).__name__}"
        return out

    def _saliency_when_idle(self, budget_s: float = 0.05) -> None:
        """Saliency of arrived slices, in the gaps between arrivals, so completion does not wait for it.

        Header indexing always comes first (it must keep up with the console); whatever is not done
        by completion is computed then, for the missing slices only.
        """
        from mediqa.agent.select.saliency import record_saliency

        deadline = time.perf_counter() + budget_s
        while self._saliency_todo and time.perf_counter() < deadline:
            record = self._saliency_todo.popleft()
            try:
                values = record_saliency(record)
            except Exception as exc:  # noqa: BLE001 - saliency is an optimisation; scoring retries it
                log.debug("saliency on arrival failed for %s: %s", self.labels.label(record.path), type(exc).__name__)
                continue
            self.tracker.store_saliency(record.series_uid, values)

    # --- completion ----------------------------------------------------------------------------
    def _hold(self, st: SeriesState) -> bool:
        """True while a series that looks complete must still wait (see the module docstring)."""
        if not self._scan_done or not self._seeded or st.series_uid in self._unsaved:
            return True
        if st.state in ("open", "reopened"):
            early = (self.config.completion.early_on_expected_count and st.expected is not None
                     and st.instances >= st.expected)
            quiet = self.config.completion.quiet_for(st.modality)
            if not early and self.clock() - max(st.last_arrival, self._started_at) < quiet:
                return True  # a quiet period after a start: what arrived while the agent was stopped is unknown
        if self._folders_busy(self.tracker.folders(st.series_uid)):
            return True
        return self._files_changed(st)

    def _folders_busy(self, folders: set[str]) -> bool:
        """A file is pending in one of ``folders`` (first seen less than ``_hold_cap`` ago: a file that
        never stops changing, a log someone writes into the export, holds its folder only that long)."""
        now = self.clock()
        for folder in folders:
            paths = self._pending.get(folder)
            if not paths:
                continue
            gone: list[str] = []
            busy = False
            for path in paths:  # stops at the first pending one: O(1) on a big backlog
                if path not in self.settler:
                    gone.append(path)
                elif now - self._first_seen.get(path, now) < self._hold_cap:
                    busy = True
                    break
            paths.difference_update(gone)
            if busy:
                return True
            if not paths:
                del self._pending[folder]
        return False

    def _files_changed(self, st: SeriesState) -> bool:
        """Re-stat the series' files: one changed since it was read goes back to settling."""
        changed = 0
        for path, size, mtime_ns in self.tracker.indexed_files(st.series_uid):
            try:
                now = os.stat(path)
            except OSError:
                continue  # gone: the series is scored on what can be read, and says so
            if (now.st_size, now.st_mtime_ns) != (size, mtime_ns):
                self._observe(path, now)
                changed += 1
        if changed:
            log.info("series %s: %d file(s) changed since they were read: reading them again", st.series_key, changed)
        return changed > 0

    # --- scoring -------------------------------------------------------------------------------
    def _score_due(self) -> list[SeriesResult]:
        results = []
        for st in self.tracker.due(hold=self._hold):
            result = self._score_one(st)
            if result is not None:
                results.append(result)
        return results

    def _score_one(self, st: SeriesState) -> SeriesResult | None:
        uid = st.series_uid
        records = self.tracker.records(uid)
        skips = self.tracker.skip_counts(uid)
        digest = _digest(self.tracker.content(uid), skips)
        unreadable = sum(n for reason, n in skips.items() if reason not in FILTER_REASONS)
        try:
            attempts = self.tracker.begin_attempt(uid)
        except sqlite3.OperationalError:  # cannot count it (a full disk): this attempt is all the same
            attempts = st.attempts + 1
        started = time.perf_counter()
        if attempts > MAX_SCORING_ATTEMPTS:
            log.error("series %s stopped the agent %d times while it was scored: reported unscored",
                      st.series_key, attempts - 1)
            result = unscored_result(records, [f"scoring stopped the agent {attempts - 1} times (internal error)"],
                                     scorer=self.scorer, series_uid=uid, series_key=st.series_key, modality=st.modality)
        elif not records:
            summary = _skip_summary(skips) or "no file"
            if skips and all(reason in FILTER_REASONS for reason in skips):
                result = unscored_result([], [f"skipped: {summary}"], decision="skipped", series_uid=uid,
                                         series_key=st.series_key, modality=st.modality)
            else:
                result = unscored_result([], [f"no image could be read: {summary}"], scorer=self.scorer,
                                         series_uid=uid, series_key=st.series_key, modality=st.modality)
        else:
            result = self._analyse(st, records)
        notice = _read_notice(len({r.sop_instance_uid for r in records}), unreadable, st.expected)
        if notice:
            result = replace(result, notices=(notice, *result.notices))
        if result.processing_ms == 0.0:
            result = replace(result, processing_ms=(time.perf_counter() - started) * 1000.0)
        return result if self._save(result, st, digest) else None

    def _analyse(self, st: SeriesState, records: list[InstanceRecord]) -> SeriesResult:
        try:
            stored = None
            if self.config.scoring.selection == "salient":
                self._forget_saliency_todo(st.series_uid)  # computed for the whole series at scoring now
                stored = self.tracker.saliency(st.series_uid)
            return analyse_series(records, self.scorer, self.config, stored_saliency=stored).result
        except MediqaError as exc:
            text = self._scrubber.scrub(str(exc))
            log.info("series %s could not be scored: %s", st.series_key, clean_text(text, 200))
            return unscored_result(records, [text], scorer=self.scorer)
        except sqlite3.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one series is that series' unscored result
            self._internal_error(f"scoring series {st.series_key}", exc)
            return unscored_result(records, [f"internal error ({type(exc).__name__})"], scorer=self.scorer)

    def _save(self, result: SeriesResult, st: SeriesState, digest: str) -> bool:
        """The result row and the series' ``scored`` state in one transaction, then the console line.

        False when the series changed while scoring (it is scored again) or when the result repeats the
        live one (same instances: history only). A database that refuses the write: the result is shown
        now and kept until it can be written.
        """
        echo = self.store.is_echo(st.series_uid, digest)
        try:
            with self.db.transaction() as db:
                if not self.tracker.mark_scored(db, st.series_uid, st.generation, st.changes):
                    log.info("series %s changed while scoring; it will be scored again", st.series_key)
                    return False
                saved = self.store.add(db, result, st.generation, digest=digest)
        except sqlite3.Error as exc:
            if is_corrupt(exc):
                raise
            self._pause_writes()
            self._problem("state", f"the state database cannot be written ({clean_text(str(exc), 80)}): results are "
                                   "shown, kept in memory and written when it can")
            shown_at = self.clock() if echo else self._show(result, 0)
            self._unsaved[st.series_uid] = _Unsaved(result, st, digest, shown_at)
            return not echo
        if saved.echo:
            log.info("series %s scored again on the instances already reported: recorded as history", st.series_key)
            return False
        self._shown(saved.result_id, self._show(result, saved.result_id))
        return True

    def _show(self, result: SeriesResult, result_id: int) -> float | None:
        """Hand a result to ``on_result``; returns when it was shown (None: it failed, show it later)."""
        if self.on_result is not None:
            try:
                self.on_result(result, result_id)
            except Exception as exc:  # noqa: BLE001 - a broken console must not lose the result
                self._internal_error("showing a result", exc)
                return None
        return self.clock()

    def _shown(self, result_id: int, when: float | None) -> None:
        if when is None:
            return
        try:
            self.store.mark_shown(result_id, when)
        except sqlite3.OperationalError:  # not recorded: it is shown again (marked late) at the next start
            self._pause_writes()

    def _flush_unsaved(self) -> None:
        written = 0
        for uid, u in list(self._unsaved.items()):
            with self.db.transaction() as db:
                saved = None
                if self.tracker.mark_scored(db, uid, u.state.generation, u.state.changes):
                    saved = self.store.add(db, u.result, u.state.generation, digest=u.digest, shown_at=u.shown_at)
            del self._unsaved[uid]
            if saved is None:
                log.info("series %s changed meanwhile: it will be scored again", u.state.series_key)
                continue
            written += 1
            if u.shown_at is None and not saved.echo:
                self._shown(saved.result_id, self._show(u.result, saved.result_id))
        if written:
            log.info("the state database takes writes again: %d result(s) written", written)

    def _show_unshown(self) -> None:
        """Results committed but never shown (killed in between): shown now, marked late."""
        for rid, result, live in self.store.unshown():
            when = self._show(replace(result, shown_late=True), rid) if live else self.clock()
            self._shown(rid, when)

    def _flush_jsonl(self) -> None:
        self.store.flush_jsonl()
        self._resolved("jsonl")

    def _forget_saliency_todo(self, series_uid: str) -> None:
        if any(r.series_uid == series_uid for r in self._saliency_todo):
            self._saliency_todo = deque(r for r in self._saliency_todo if r.series_uid != series_uid)

    # --- loop ----------------------------------------------------------------------------------
    def step(self, wait_s: float = 0.0) -> list[SeriesResult]:
        """One pass: take events, parse stable files, score complete series, reconcile when due.

        Each phase is guarded: an error in one is a problem (``health``), and the next phase runs.
        """
        self._failed.clear()
        with self._guard("taking file events", "intake"):
            self._drain(wait_s)
        if self.clock() - self._last_reconcile >= self.config.watch.reconcile_interval_s:
            self.reconcile()
        if not self._late_shown:
            self._late_shown = True
            with self._guard("showing results not shown before", "loop"):
                self._show_unshown()
        if self._writable():
            with self._guard("restoring the history from results.jsonl", "state"):
                self._seed()
            with self._guard("indexing files", "intake"):
                self._index_ready()
            if self._unsaved:
                with self._guard("writing results", "state"):
                    self._flush_unsaved()
        results: list[SeriesResult] = []
        with self._guard("scoring", "scoring"):
            results = self._score_due()
        if self._writable():
            with self._guard("writing results.jsonl", "jsonl"):
                self._flush_jsonl()
            if self.settler.all_settling():
                with self._guard("computing saliency", "saliency"):
                    self._saliency_when_idle()
        self._update_health()
        return results

    def idle(self) -> bool:
        try:
            return not self.settler and self.events.empty() and not self._unsaved \
                and self.tracker.next_deadline() is None
        except sqlite3.Error:
            return False

    def run(self, stop: threading.Event, watch: bool = True, tick_s: float = 0.2) -> None:
        """Run until ``stop`` is set. With ``watch``, file events feed the loop; else only periodic scans."""
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:  # no export path in any log line or traceback while the agent runs
            handler.addFilter(self._scrubber)
        watcher: FolderWatcher | None = None
        try:
            if watch:
                watcher = self._start_watcher()
            self.reconcile()  # files that arrived while the agent was stopped
            while not stop.is_set():
                try:
                    self.step(wait_s=tick_s)
                except Exception as exc:  # noqa: BLE001 - never down (step guards its phases; this is the last net)
                    self._internal_error("in the agent loop", exc)
                    self._problem("loop", f"internal error in the agent loop ({type(exc).__name__})")
                    stop.wait(tick_s)
                if watch:
                    watcher = self._check_watcher(watcher)
        finally:
            if watcher is not None:
                try:
                    watcher.stop()
                except Exception as exc:  # noqa: BLE001 - stopping must not hide the reason we stop
                    log.debug("stopping the watcher: %s", type(exc).__name__)
            self.scorer.close()
            for handler in handlers:
                handler.removeFilter(self._scrubber)

    def _start_watcher(self) -> FolderWatcher | None:
        watch = self.config.watch
        try:
            watcher = FolderWatcher(self.folder, self.events, watch.mode, watch.poll_interval_s,
                                    max_depth=watch.max_depth, follow_links=watch.follow_links)
            watcher.start()
        except Exception as exc:  # noqa: BLE001 - e.g. the inotify watch limit: the rescan still finds files
            self._watcher_retry_at = self.clock() + WATCHER_RETRY_S
            self._problem("watcher", f"the file watcher cannot start ({type(exc).__name__}): files are found by the "
                                     f"rescan every {self.config.watch.reconcile_interval_s:g} s")
            return None
        self._resolved("watcher")
        return watcher

    def _check_watcher(self, watcher: FolderWatcher | None) -> FolderWatcher | None:
        """A dead observer is reported and restarted (the rescan finds files meanwhile); a partial one
        (a tree too deep for native events) is reported while it lasts."""
        if watcher is None:
            return self._start_watcher() if self.clock() >= self._watcher_retry_at else None
        why = watcher.failure()
        if watcher.alive():
            if why:
                self._problem("watcher", f"file events are incomplete ({clean_text(why, 120)}): the rescan every "
                                         f"{self.config.watch.reconcile_interval_s:g} s finds the rest")
            else:
                self._resolved("watcher")
            return watcher
        self._problem("watcher", f"the file watcher stopped ({clean_text(why or 'no reason given', 120)}): "
                                 "restarting it; the rescan finds files meanwhile")
        try:
            watcher.stop()
        except Exception as exc:  # noqa: BLE001
            log.debug("stopping the dead watcher: %s", type(exc).__name__)
        self._last_reconcile = float("-inf")  # events were lost: rescan now
        self._watcher_retry_at = self.clock() + WATCHER_RETRY_S
        return None


def file_crc32(path: str, chunk: int = 1 << 20) -> tuple[int, int]:
    """zlib.crc32 of the file's bytes and how many were read (one sequential read; cheap, not a hash)."""
    crc, n = 0, 0
    with open(path, "rb") as fh:  # read-only, like everything the agent opens in the export folder
        while block := fh.read(chunk):
            crc = zlib.crc32(block, crc)
            n += len(block)
    return crc, n


def _digest(content: list[tuple[str, int | None]], skips: dict[str, int]) -> str:
    """What a result was computed from: its instances, their content, and the files that could not be read."""
    h = hashlib.sha256()
    for sop, crc in sorted(content):
        h.update(f"{sop}:{crc}\n".encode())
    for reason, n in sorted(skips.items()):
        h.update(f"skip:{reason}:{n}\n".encode())
    return h.hexdigest()[:32]


def _read_notice(readable: int, unreadable: int, expected: int | None) -> str:
    """"27 of 28 images could be read" when files of the series were skipped, or fewer arrived than announced."""
    total = max(readable + unreadable, expected or 0)
    return f"{readable} of {total} images could be read" if readable and total > readable else ""


def _skip_summary(skips: dict[str, int]) -> str:
    return ", ".join(f"{clean_text(reason, 40).replace('_', ' ')} ({n} file{'s' if n != 1 else ''})"
                     for reason, n in skips.items())


def _private_dir(path: Path) -> None:
    """The state dir, owner-only (it holds the alert history and file names)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(path, 0o700)
    except OSError as exc:
        log.warning("cannot make the state dir private: %s", exc.strerror or type(exc).__name__)
