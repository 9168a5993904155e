"""The agent loop: events -> ready files -> indexed instances -> complete series -> results.

Single-threaded on purpose: watchdog's thread only enqueues paths; this loop owns the tracker, the clock
and the scorer, so ordering is simple and a restart resumes from the database. Each pass does a bounded
amount of each job, so a series due now is scored soon whatever else is waiting: take the file events,
walk a slice of the export folder (when a walk is due), index a bounded batch of stable files, score the
due series, compute a little saliency; ``on_pass`` is called at the end of each pass (the systemd watchdog
ping) and ``stats`` counts what was done. The jobs live in ``agent/loop/``:

- ``loop.state``: the state database (opened, seeded from results.jsonl, moved aside and rebuilt when corrupt);
- ``loop.intake``: events and walks -> pending files -> indexed instances;
- ``loop.completion``: which series are due, and what holds one that looks complete;
- ``loop.scoring``: due series -> one result each -> database, console, results.jsonl;
- ``loop.saliency``: saliency of arriving slices, so completion has little left to compute;
- ``loop.base``: what they share, the health of the agent and the guard of each phase.

Never down. A file that makes the reader raise is a final skip ``internal: <type>``, a series that makes
scoring raise gets an ``unscored`` result; both are in the database, so a restart does not meet them
again. A series that killed the process while it was being scored is tried ``MAX_SCORING_ATTEMPTS`` times,
then reported unscored. A state database that cannot be written (a full disk) makes the agent degraded
(``health``), not stopped; a corrupt one is moved aside and rebuilt.

Never wrong-and-live. A series is not due while files are pending (settling, or not yet indexed) in a
folder holding its files, before the first walk after a start has seen the backlog, within a quiet
period after a start, or while one of its files changed since it was read. A file whose content changes
after scoring re-opens its series; the new result supersedes the old one.

Never silent. Every complete series gets one live result: ok, retake, unscored (why), skipped (why).
Files are named in logs only by ``PathLabels``; tracebacks are scrubbed of export paths, and while ``run``
runs a ``PathScrubber`` sits on the root logger's handlers.

``read_header`` and ``analyse_series`` are looked up in this module when they are called (tests replace
them here), as are ``SKIPPED_KEPT`` and ``FIRST_SEEN_MAX`` when an ``Agent`` is made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mediqa.agent.config import AgentConfig, HeaderLimits
from mediqa.agent.dicom.decode import SliceKey
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.loop.ahead import AheadJob
from mediqa.agent.loop.base import COMPLAIN_EVERY_S, WRITE_RETRY_S, Health
from mediqa.agent.loop.completion import CompletionJob, check_adaptive
from mediqa.agent.loop.early import SLICE_S, EarlyPassJob
from mediqa.agent.loop.intake import IntakeJob
from mediqa.agent.loop.memory import RELEASE_AFTER_FILES, release_memory
from mediqa.agent.loop.reading import ReadPool, file_crc32
from mediqa.agent.loop.saliency import SaliencyJob
from mediqa.agent.loop.scoring import MAX_SCORING_ATTEMPTS, ResultCallback, ScoringJob
from mediqa.agent.loop.state import REBUILD_MIN_INTERVAL_S, StateJob
from mediqa.agent.loop.stats import AgentStats
from mediqa.agent.pipeline import Analysis, analyse_series
from mediqa.agent.report.privacy import PathLabels, PathScrubber, clean_text
from mediqa.agent.report.store import jsonl_path
from mediqa.agent.scoring.base import Scorer, SeriesResult
from mediqa.agent.select.prompts import load_rules
from mediqa.agent.watch.settle import Settler
from mediqa.agent.watch.watcher import FolderWatcher, PathEvent
from mediqa.errors import ConfigError

__all__ = ["COMPLAIN_EVERY_S", "FIRST_SEEN_MAX", "MAX_SCORING_ATTEMPTS", "REBUILD_MIN_INTERVAL_S", "SKIPPED_KEPT",
           "WATCHER_RETRY_S", "WRITE_RETRY_S", "Agent", "AgentStats", "Health", "PathScrubber", "ResultCallback",
           "analyse_series", "check_paths", "file_crc32", "read_header"]

log = logging.getLogger(__name__)

WATCHER_RETRY_S = 30.0
WAKE_LATE_S = 0.002  # an idle pass wakes this long after a file's window or a series' quiet period ends
FIRST_SEEN_MAX = 20000  # paths whose first sighting is remembered (bounded memory)
SKIPPED_KEPT = 1000  # ``Agent.skipped``: the latest skipped files and why


def check_paths(config: AgentConfig, folder: Path) -> None:
    """The agent writes only to its state dir, results.jsonl and the engine cache: none inside the export."""
    root = folder.resolve()
    for what, path in (("state_dir", config.state_path), ("report.jsonl", jsonl_path(config)),
                       ("scoring.engine_cache", config.engine_cache_path)):
        resolved = path.resolve()
        if resolved == root or root in resolved.parents:
            raise ConfigError(f"{what} {resolved} is inside the export folder",
                              "the agent never writes there: choose a place elsewhere")


class Agent(StateJob, IntakeJob, CompletionJob, ScoringJob, AheadJob, EarlyPassJob, SaliencyJob):
    """The daemon's loop over one export folder (``step`` is one pass, ``run`` the passes until stopped).

    ``on_result(result, result_id)`` shows each result (the console); ``on_pass()`` is called once per pass
    and every few seconds of a long walk (the systemd watchdog ping). ``stats`` (an ``AgentStats``) counts
    files indexed and skipped, the pending files, the last file event and the results by decision.
    """

    def __init__(self, config: AgentConfig, scorer: Scorer, folder: Path, *, clock: Callable[[], float] = time.time,
                 on_result: ResultCallback | None = None, on_pass: Callable[[], None] | None = None) -> None:
        check_adaptive(config.completion.adaptive_k, config.completion.adaptive_min_s)
        self.config = config
        self.folder = folder.resolve()
        check_paths(config, self.folder)
        self.scorer = scorer
        self.clock = clock
        self.on_result = on_result
        self.on_pass = on_pass
        # Folders still being written by an open DICOM association (the node feed sets it): a series
        # received there is due only once its association is released and its quiet period has passed.
        self.open_folders: Callable[[], set[str]] | None = None
        self.stats = AgentStats()
        self.labels = PathLabels(self.folder, config.report.log_paths)
        self._scrubber = PathScrubber([str(self.folder)])
        self.state_dir = config.state_path.resolve()
        self.events: queue.SimpleQueue[PathEvent] = queue.SimpleQueue()
        self.settler = Settler(config.watch.file_stable_s, clock)  # files seen, not yet stable
        self._saliency_first = deque()
        self._saliency_todo = deque()  # filled as instances arrive, drained a little every pass
        self._directions = {}
        self._walk = None
        self._last_reconcile = float("-inf")
        self._unlistable = set()
        self.skipped = {}
        self._skipped_kept = SKIPPED_KEPT
        # what keeps series from being scored early: files pending per folder, and when each was first seen
        self._pending = {}
        self._first_seen = {}
        self._first_seen_max = FIRST_SEEN_MAX
        self._hold_cap = max(300.0, 30.0 * max([*config.completion.quiet_period_s.values(), 1.0]))
        self._arrived = {}
        self._applied = {}
        self._rhythms = {}
        self._indexed_since_release = 0
        # Work done for the results after the loop went idle (contact sheets, SR reports): True while some is
        # left. The memory release waits for it: what it leaves behind would stay otherwise.
        self.background: list[Callable[[], bool]] = []
        self._pool = ReadPool()  # worker processes for big batches (started when first needed)
        self.due_left = 0
        self._ahead = {}  # series uid -> its result scored ahead of its quiet period's end (``loop.ahead``)
        self._ahead_tries = {}
        self._ahead_more = False
        self._early = {}  # series uid -> the fractions of its count it was passed to the model at (``loop.early``)
        self._early_pass = None  # the early model pass running in its thread
        self._early_slice_s = SLICE_S
        self._early_seen_at = float("-inf")
        # Files or series waiting after the last pass (set by the loop, read by other threads: a plain flag).
        # The SR outbox builds reports only while this is False (or once they waited SR_DEFER_MAX_S).
        self.working = False
        self._unsaved = {}
        self._problems = {}
        self._failed = set()  # problems raised during the current pass
        self._last_complaint = float("-inf")
        self._writes_paused_until = float("-inf")
        self._tracebacks = {}
        self._watcher_retry_at = float("-inf")
        self._rebuilt_at = None
        self._rebuilding = False
        self._late_shown = False
        _private_dir(self.state_dir)
        self._open_state()

    # --- where tests replace the reader and the pipeline (looked up in this module at each call) ----------
    def _read_header(self, path: str, *, skip_derived: bool, skip_localizers: bool,
                     limits: HeaderLimits) -> InstanceRecord:
        return read_header(path, skip_derived=skip_derived, skip_localizers=skip_localizers, limits=limits)

    def _analyse_series(self, records: Sequence[InstanceRecord], scorer: Scorer, config: AgentConfig, *,
                        stored_saliency: Mapping[SliceKey, float] | None = None) -> Analysis:
        return analyse_series(records, scorer, config, stored_saliency=stored_saliency)

    # --- one pass ---------------------------------------------------------------------------------------
    def step(self, wait_s: float = 0.0) -> list[SeriesResult]:
        """One pass: take events, walk a slice, index a batch of stable files, score due series, some saliency,
        and, with nothing else to do, score one quiet series ahead of its quiet period's end (``loop.ahead``).

        Waits up to ``wait_s`` for a file event only when nothing else is left to do. Each phase is
        guarded: an error in one is a problem (``health``), and the next phase runs.
        """
        self._failed.clear()
        busy = not self.settler.all_settling()  # files past their quiet window wait to be indexed
        with self._guard("taking file events", "intake"):
            more = busy or self._walk is not None or self._saliency_waiting() or self._ahead_more
            self._drain(0.0 if more else self._event_wait(wait_s))
        self._walk_slice()
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
            with self._guard("computing saliency", "saliency"):
                self._saliency_step(busy=not self.settler.all_settling())
            with self._guard("passing likely chosen slices to the model", "scoring"):
                self._pass_early()
            with self._guard("scoring ahead", "scoring"):
                self._score_ahead()
        if self._indexed_since_release >= RELEASE_AFTER_FILES and not self._saliency_waiting() and self.idle() \
                and not self._background_busy():
            self._release_memory()
        self._update_health()
        self.working = bool(self.settler) or self._pool.in_flight() > 0 or self.due_left > 0 or self._walk is not None
        self.stats.pass_done(len(self.settler))
        self._ping()
        return results

    def _event_wait(self, longest: float) -> float:
        """How long a pass with nothing to do waits for a file event: until the next pending file leaves its
        quiet window or the next open series goes quiet, at most ``longest`` (the tick).

        Why: a whole tick was added to both (a file seen without a close event, a series completed by its
        quiet period: up to 0.2 s each). ``WAKE_LATE_S`` past the moment, so the pass then finds it due.
        """
        if longest <= 0:
            return 0.0
        due = [self.settler.next_window_end_in()]
        with contextlib.suppress(sqlite3.Error):  # a tick, as before
            due.append(self.tracker.next_deadline(upcoming=True))
        return min([longest] + [max(0.0, w) + WAKE_LATE_S for w in due if w is not None])

    def _background_busy(self) -> bool:
        try:
            return any(busy() for busy in self.background)
        except Exception as exc:  # noqa: BLE001 - a question about memory: never a reason to fail the pass
            log.debug("asking background work whether it is done: %s", type(exc).__name__)
            return False

    def _release_memory(self) -> None:
        """Idle after a backlog: give the memory it took back (``loop.memory``), stop the reading workers."""
        self._indexed_since_release = 0
        self._directions.clear()
        self.tracker.forget_decoded()
        if not self.config.ingest.read_workers_warm:
            self._pool.close()
        self._scorer_hook("release_spare")  # the one-thread session made while the workers were busy
        trimmed = release_memory(lambda: self.db.query("PRAGMA shrink_memory"))
        log.debug("idle after a backlog: memory released%s", " (heap trimmed)" if trimmed else "")

    def idle(self) -> bool:
        """Nothing pending: no file, event, walk, unsaved result, series left due, or open series.

        ``due_left``: a series complete but not yet scored has no deadline, so the tracker alone called a
        pass idle while a backlog still had series to score (the memory release came then, mid-backlog).
        """
        try:
            return not self.settler and self.events.empty() and not self._unsaved and self._walk is None \
                and self._scan_done and self.due_left == 0 and self.tracker.next_deadline() is None
        except sqlite3.Error:
            return False

    def run(self, stop: threading.Event, watch: bool = True, tick_s: float = 0.2) -> None:
        """Run until ``stop`` is set. With ``watch``, file events feed the loop; else only periodic walks.

        The first pass starts a walk of the export folder (files that arrived while the agent was stopped),
        in slices, while the passes index what it found, folder by folder.
        """
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:  # no export path in any log line or traceback while the agent runs
            handler.addFilter(self._scrubber)
        watcher: FolderWatcher | None = None
        try:
            with self._guard("loading the prompt rules", "loop"):
                load_rules()  # parsed once, now: not in the first series' latency
            if watch:
                watcher = self._start_watcher()
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
            self._reap_early(wait=True)  # the scorer is closed next: no model pass may still be running
            self._pool.close()
            self.scorer.close()
            for handler in handlers:
                handler.removeFilter(self._scrubber)

    # --- the file watcher -------------------------------------------------------------------------------
    def _start_watcher(self) -> FolderWatcher | None:
        watch = self.config.watch
        try:
            watcher = FolderWatcher(self.folder, self.events, watch.mode, watch.poll_interval_s,
                                    max_depth=watch.max_depth, follow_links=watch.follow_links)
            watcher.start()
        except Exception as exc:  # noqa: BLE001 - e.g. the inotify watch limit: the walk still finds files
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
        self._walk = None
        self._last_reconcile = float("-inf")  # events were lost: rescan now
        self._watcher_retry_at = self.clock() + WATCHER_RETRY_S
        return None


def _private_dir(path: Path) -> None:
    """The state dir, owner-only (it holds the alert history and file names)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(path, 0o700)
    except OSError as exc:
        log.warning("cannot make the state dir private: %s", exc.strerror or type(exc).__name__)
