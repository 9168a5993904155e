"""The loop's state database: opened at start, seeded from results.jsonl when it holds no result, moved
aside and rebuilt when it turns out corrupt (at start or while running).

A database without results beside a results.jsonl that has some (the old one lost, moved aside as corrupt,
or recreated empty by ``mediqa alerts``) gets the history back from the file first, so a series already
reported and unchanged is recorded as history when it is scored again, never alerted again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mediqa.agent.loop.base import LoopBase
from mediqa.agent.report.privacy import clean_text
from mediqa.agent.report.store import ResultStore, jsonl_path
from mediqa.agent.series.tracker import SeriesTracker
from mediqa.agent.state.db import move_aside, open_state

log = logging.getLogger(__name__)

REBUILD_MIN_INTERVAL_S = 60.0  # a database that keeps rotting is not rebuilt on every pass


class StateJob(LoopBase):
    def _open_state(self) -> None:
        """Open the state database (a corrupt one is moved aside); a new one is seeded from results.jsonl."""
        db = open_state(self.state_dir, recover=True)
        db.make_private()
        self.db = db
        self.tracker = SeriesTracker(db, self.config.completion, self.clock)
        self.store = ResultStore(db, jsonl_path(self.config), self.clock)
        self._started_at = self.clock()  # open series wait a quiet period after this
        self._scan_done = False  # nothing is due before a rescan has seen the backlog
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
        self._saliency_first.clear()
        self._saliency_todo.clear()
        self._directions.clear()
        self._unsaved.clear()  # their series are unknown to a new database: they are scored again
        self._arrived.clear()
        self._applied.clear()
        self._rhythms.clear()
        self._walk = None  # the export folder is walked again from its top
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
        self._pool.close()
        self.db.close()
