"""What every job of the agent loop shares: the state it works on, its health, and the guard of each phase.

``LoopBase`` declares the attributes the jobs (``state``, ``intake``, ``completion``, ``scoring``,
``ahead``, ``early``, ``saliency``) read and write; ``mediqa.agent.service.Agent`` inherits them all and sets them up.
A call from one job into another goes through a method declared here (``_recover_corrupt``, ``_observe``,
``_hold``, ``_take_ahead``, ``_flush_jsonl``, ...), so each module stands on this one only.

Never down: each phase of a pass runs inside ``_guard``; a database or internal error becomes a problem
(``health``), logged at ERROR at most once a minute (``COMPLAIN_EVERY_S``), and the next phase runs.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.agent.config import AgentConfig
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.loop.reading import ReadPool
from mediqa.agent.loop.rhythm import Rhythm
from mediqa.agent.loop.stats import AgentStats
from mediqa.agent.report.privacy import PathLabels, PathScrubber, clean_text
from mediqa.agent.report.store import ResultStore
from mediqa.agent.scoring.base import Scorer, SeriesResult
from mediqa.agent.series.tracker import SeriesState, SeriesTracker
from mediqa.agent.state.db import StateDB, is_corrupt
from mediqa.agent.watch.settle import Settler
from mediqa.agent.watch.watcher import PathEvent

log = logging.getLogger(__name__)

WRITE_RETRY_S = 5.0  # after a failed write, writes wait this long before they are tried again
COMPLAIN_EVERY_S = 60.0  # at most one ERROR line about a degraded agent per minute


@dataclass(frozen=True)
class Health:
    """``ok``, or ``degraded`` with the reasons (the agent keeps watching either way)."""

    status: str
    reasons: tuple[str, ...] = ()


@dataclass
class Unsaved:
    """A result shown but not yet stored (the database refused the write)."""

    result: SeriesResult
    state: SeriesState
    digest: str
    shown_at: float | None


class LoopBase:
    """The loop's shared state (set up by ``Agent.__init__`` and ``StateJob._open_state``) and its health."""

    config: AgentConfig
    folder: Path
    clock: Callable[[], float]
    labels: PathLabels
    state_dir: Path
    db: StateDB
    tracker: SeriesTracker
    store: ResultStore
    settler: Settler
    stats: AgentStats
    skipped: dict[str, str]
    on_pass: Callable[[], None] | None
    open_folders: Callable[[], set[str]] | None
    _scrubber: PathScrubber
    # intake: files pending per folder (what holds series), when each was first seen, the walk in progress
    _pending: dict[str, set[str]]
    _first_seen: dict[str, float]
    _first_seen_max: int
    _skipped_kept: int
    _walk: Iterator[str] | None
    _last_reconcile: float
    _unlistable: set[str]
    events: queue.SimpleQueue[PathEvent]
    _arrived: dict[str, float]  # series uid -> when its newest file was written (agent clock), this run
    _applied: dict[str, float]  # series uid -> when the tracker last recorded one of its files (agent clock)
    _rhythms: dict[str, Rhythm]  # series uid -> its files' arrival rhythm (``completion.adaptive`` only)
    _pool: ReadPool
    _saliency_first: deque[InstanceRecord]  # arrivals that are likely candidates of their series
    _saliency_todo: deque[InstanceRecord]  # arrivals that may be (their series announces no slice count)
    _directions: dict[str, tuple[int, float] | int]  # series uid -> its slice direction (or a first slice)
    _indexed_since_release: int
    scorer: Scorer
    due_left: int  # series found due by the last pass and not scored in it (they are scored next pass)
    # completion
    _started_at: float
    _scan_done: bool
    _seeded: bool
    _hold_cap: float
    # health and the state database
    _unsaved: dict[str, Unsaved]
    _problems: dict[str, str]
    _failed: set[str]
    _last_complaint: float
    _writes_paused_until: float
    _tracebacks: dict[str, float]
    _rebuilt_at: float | None
    _rebuilding: bool

    # --- calls between jobs: each is implemented by one job (named), declared here for the type checker --
    if TYPE_CHECKING:
        def _recover_corrupt(self, exc: BaseException, move: bool = True) -> None: ...  # state.StateJob

        def _observe(self, path: str, st: os.stat_result, closed: bool = False) -> None: ...  # intake.IntakeJob

        def _hold(self, st: SeriesState) -> bool: ...  # completion.CompletionJob

        def _arrival(self, series_uid: str, written: float, applied_at: float) -> None: ...  # completion.CompletionJob

        def _forget_arrival(self, series_uid: str) -> None: ...  # completion.CompletionJob

        def _due(self) -> list[SeriesState]: ...  # completion.CompletionJob

        def _queue_saliency(self, records: list[InstanceRecord]) -> None: ...  # saliency.SaliencyJob

        def _flush_jsonl(self) -> None: ...  # scoring.ScoringJob

        def _forget_saliency_todo(self, series_uid: str) -> None: ...  # saliency.SaliencyJob

        def _since(self, st: SeriesState) -> float: ...  # completion.CompletionJob

        def _quiet_wait(self, st: SeriesState) -> float: ...  # completion.CompletionJob

        def _held(self, st: SeriesState) -> bool: ...  # completion.CompletionJob

        def _analyse(self, st: SeriesState, records: list[InstanceRecord]) -> SeriesResult: ...  # scoring.ScoringJob

        def _take_ahead(self, series_uid: str, digest: str) -> SeriesResult | None: ...  # ahead.AheadJob

        def _forget_ahead(self, series_uid: str) -> None: ...  # ahead.AheadJob

    # --- writes ---------------------------------------------------------------------------------------
    def _writable(self) -> bool:
        return self.clock() >= self._writes_paused_until

    def _pause_writes(self) -> None:
        self._writes_paused_until = self.clock() + WRITE_RETRY_S

    def _write_refused(self, exc: sqlite3.Error) -> None:
        self._pause_writes()
        self._problem("state", f"the state database cannot be written ({clean_text(str(exc), 80)}): results are "
                               "shown, kept in memory and written when it can")

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
            self._write_refused(exc)
        except OSError as exc:
            self._problem(key, f"{what} failed ({exc.strerror or type(exc).__name__})")
        except Exception as exc:  # noqa: BLE001 - never down: a bug in one phase is reported, the loop goes on
            self._internal_error(what, exc)
            self._problem(key, f"internal error while {what} ({type(exc).__name__})")

    # --- health ---------------------------------------------------------------------------------------
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
        self._internal_error_text(what, type(exc).__name__, "".join(traceback.format_exception(exc)).rstrip())

    def _internal_error_text(self, what: str, name: str, text: str) -> None:
        """As ``_internal_error``, for an exception met elsewhere (a worker process): its type and traceback."""
        now = self.clock()
        if now - self._tracebacks.get(name, float("-inf")) >= COMPLAIN_EVERY_S:
            self._tracebacks[name] = now
            log.error("internal error while %s (%s): recorded, the agent goes on\n%s", what, name,
                      self._scrubber.scrub(text))
        else:
            log.warning("internal error while %s (%s): recorded, the agent goes on", what, name)

    def _scorer_hook(self, name: str) -> None:
        """The learned scorer's ``prepare_spare``/``release_spare`` (the classical scorer has neither)."""
        hook = getattr(self.scorer, name, None)
        if hook is not None:
            hook()

    def _ping(self) -> None:
        """``on_pass`` (the systemd watchdog's ping): once per pass, and every few seconds of a long walk."""
        if self.on_pass is not None:
            try:
                self.on_pass()
            except Exception as exc:  # noqa: BLE001 - a failing ping must not stop the loop
                self._internal_error("calling on_pass", exc)
