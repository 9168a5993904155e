"""The agent loop: events -> ready files -> indexed instances -> complete series -> results.

Single-threaded on purpose: watchdog's thread only enqueues paths; this loop owns the tracker,
the clock and the scorer, so ordering is simple and a restart resumes from the database.
A bad file is logged with its reason and never stops the loop.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from mediqa.agent.config import AgentConfig
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.pipeline import analyse_series
from mediqa.agent.report.store import ResultStore, jsonl_path
from mediqa.agent.scoring.base import Scorer, SeriesResult
from mediqa.agent.series.tracker import SeriesTracker
from mediqa.agent.state.db import open_state
from mediqa.agent.watch.settle import Settler
from mediqa.agent.watch.walk import walk_files
from mediqa.agent.watch.watcher import FolderWatcher, PathEvent
from mediqa.errors import ConfigError, DicomSkip, MediqaError

log = logging.getLogger(__name__)

ResultCallback = Callable[[SeriesResult, int], None]


class Agent:
    def __init__(self, config: AgentConfig, scorer: Scorer, folder: Path, *, clock: Callable[[], float] = time.time,
                 on_result: ResultCallback | None = None) -> None:
        self.config = config
        self.folder = folder.resolve()
        state = config.state_path.resolve()
        if state == self.folder or self.folder in state.parents:
            raise ConfigError(f"state_dir {state} is inside the export folder",
                              "the agent never writes there: choose a state_dir elsewhere")
        self.scorer = scorer
        self.clock = clock
        self.on_result = on_result
        # One state database, opened once, shared by the tracker and the result store.
        self.db = open_state(state)
        self.tracker = SeriesTracker(self.db, config.completion, clock)
        self.store = ResultStore(self.db, jsonl_path(config), clock)
        self.events: queue.Queue[PathEvent] = queue.Queue()
        self.settler = Settler(config.watch.file_stable_s, clock)  # files seen, not yet stable
        self._saliency_todo: deque[InstanceRecord] = deque()  # filled as instances arrive, drained when idle
        self._last_reconcile = float("-inf")
        self.skipped: dict[str, str] = {}

    # --- intake --------------------------------------------------------------------------------
    def offer(self, path: str, closed: bool = False) -> None:
        """A path may hold a new or changed file: remember it until it is stable, then parse it."""
        try:
            st = os.stat(path)
        except OSError:
            return  # gone again (a temp file renamed away)
        if not stat.S_ISREG(st.st_mode) or self.tracker.file_known(path, st.st_size, st.st_mtime_ns):
            return
        self.settler.observe(path, st.st_size, st.st_mtime_ns, closed)

    def reconcile(self) -> int:
        """Walk the whole export folder; enqueue files the events missed. Returns how many were new."""
        before = len(self.settler)
        for path in walk_files(self.folder):
            self.offer(path)
        self._last_reconcile = self.clock()
        return len(self.settler) - before

    def _drain(self, timeout: float) -> None:
        try:
            event = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return
        while True:
            if event.rescan:
                for path in walk_files(event.path):
                    self.offer(path)
            else:
                self.offer(event.path, event.closed)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _index_ready(self) -> None:
        indexed: list[InstanceRecord] = []
        for path, st in self.settler.ready():  # files inside their quiet window are not even stat'ed
            record = self._read(path, st)
            if record is not None:
                indexed.append(record)
        if not indexed:
            return
        added = self.tracker.add_many(indexed)
        if self.config.scoring.selection == "salient":
            self._saliency_todo.extend(r for r, new in zip(indexed, added, strict=True) if new)

    def _read(self, path: str, st: os.stat_result) -> InstanceRecord | None:
        """Header of a stable file, or None (skipped for good, or left pending for a retry)."""
        ingest = self.config.ingest
        try:
            record = read_header(path, skip_derived=ingest.skip_derived, skip_localizers=ingest.skip_localizers)
        except DicomSkip as skip:
            retry = skip.retry
            attempts = self.tracker.record_skip(path, st.st_size, st.st_mtime_ns, skip.reason, final=not retry)
            if retry and attempts < ingest.max_retries:
                self.settler.again(path, st.st_size, st.st_mtime_ns)
                log.debug("not ready yet (%s, try %d): %s", skip.reason, attempts, os.path.basename(path))
                return None
            if retry:
                self.tracker.record_skip(path, st.st_size, st.st_mtime_ns, skip.reason, final=True)
            self.settler.done(path)
            self.skipped[path] = skip.reason
            log.info("skipped %s: %s", os.path.basename(path), skip)
            return None
        self.settler.done(path)
        return record

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
                log.debug("saliency on arrival failed for %s: %s", os.path.basename(record.path), exc)
                continue
            self.tracker.store_saliency(record.series_uid, values)

    # --- scoring -------------------------------------------------------------------------------
    def _score_due(self) -> list[SeriesResult]:
        results = []
        for st in self.tracker.due():
            records = self.tracker.records(st.series_uid)
            try:
                stored = None
                if self.config.scoring.selection == "salient":
                    self._forget_saliency_todo(st.series_uid)  # computed for the whole series at scoring now
                    stored = self.tracker.saliency(st.series_uid)
                result = analyse_series(records, self.scorer, self.config, stored_saliency=stored).result
            except MediqaError as exc:
                log.error("series %s could not be scored: %s", st.series_key, exc)
                self._give_up(st.series_uid, st.generation, str(exc))
                continue
            except Exception:  # a bug in one series must not stop the agent: log with traceback
                log.exception("series %s: scoring failed", st.series_key)
                self._give_up(st.series_uid, st.generation, "internal error (see log)")
                continue
            result_id = self._save(result, st.generation)
            if result_id is None:
                continue
            results.append(result)
            if self.on_result:
                self.on_result(result, result_id)
        return results

    def _save(self, result: SeriesResult, generation: int) -> int | None:
        """The result row and the series' ``scored`` state in one transaction; None when the series changed."""
        with self.db.transaction() as db:
            if not self.tracker.mark_scored(db, result.series_uid, generation):
                log.info("series %s changed while scoring; it will be scored again", result.series_key)
                return None
            result_id = self.store.add(db, result, generation)
        self.store.flush_jsonl()
        return result_id

    def _forget_saliency_todo(self, series_uid: str) -> None:
        if any(r.series_uid == series_uid for r in self._saliency_todo):
            self._saliency_todo = deque(r for r in self._saliency_todo if r.series_uid != series_uid)

    def _give_up(self, series_uid: str, generation: int, why: str) -> None:
        with self.db.transaction() as db:
            self.tracker.mark_scored(db, series_uid, generation)
        log.warning("series marked done without a score: %s", why)

    # --- loop ----------------------------------------------------------------------------------
    def step(self, wait_s: float = 0.0) -> list[SeriesResult]:
        """One pass: take events, parse stable files, score complete series, reconcile when due."""
        self._drain(wait_s)
        if self.clock() - self._last_reconcile >= self.config.watch.reconcile_interval_s:
            self.reconcile()
        self._index_ready()
        results = self._score_due()
        if self.settler.all_settling():
            self._saliency_when_idle()
        return results

    def idle(self) -> bool:
        return not self.settler and self.events.empty() and self.tracker.next_deadline() is None

    def run(self, stop: threading.Event, watch: bool = True, tick_s: float = 0.2) -> None:
        """Run until ``stop`` is set. With ``watch``, file events feed the loop; else only periodic scans."""
        watcher = None
        if watch:
            watcher = FolderWatcher(self.folder, self.events, self.config.watch.mode,
                                    self.config.watch.poll_interval_s)
            watcher.start()
        self.reconcile()  # files that arrived while the agent was stopped
        try:
            while not stop.is_set():
                self.step(wait_s=tick_s)
        finally:
            if watcher is not None:
                watcher.stop()
            self.scorer.close()
