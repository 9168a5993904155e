"""Scoring ahead: a series silent for ``completion.score_ahead_s`` is scored in the loop's spare time, before
its quiet period ends; when the period ends, that result is the one saved and shown, if the series' files
are exactly those it was computed from (the same digest: its instances, their content, its skipped files).

Why: a series that announces no instance count is complete only after its quiet period (CT 5 s, MR 10 s),
and for a series arriving on its own the loop is idle through most of it. Scored then, the result is
shown the moment the period ends instead of one analysis (~0.3-0.5 s on 2 cores) later. (It does not
shorten a burst of many series: there the loop is busy through their quiet periods, docs/performance.md.)

Never early, never stale: the result is saved only when the series is due, after every hold of completion
(pending files, an open association, files changed since they were read, which are read again and so change
the digest); a result computed from other files is dropped and the series scored again. Bounded: one series
per pass, only while no series is due, only a series with no file pending in its folders; the one whose
quiet period ends first; at most ``AHEAD_TRIES`` times per series in a run (one that trickles in is not
scored again and again); at most ``AHEAD_KEPT`` results held. A crash while scoring ahead counts as a
scoring attempt (``scoring.MAX_SCORING_ATTEMPTS``), so a series that kills the agent is not tried forever.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass

from mediqa.agent.loop.base import LoopBase
from mediqa.agent.loop.scoring import series_digest
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.series.tracker import SeriesState

log = logging.getLogger(__name__)

AHEAD_TRIES = 3  # times one series may be scored ahead in a run
AHEAD_KEPT = 64  # results scored ahead and held for their series' completion
AHEAD_MAX_ATTEMPTS = 3  # a series with this many unfinished attempts is left to completion (it reports it)


@dataclass(frozen=True)
class Ahead:
    """A result scored ahead, and what it was computed from."""

    digest: str
    marker: tuple[float, int, int]  # the series' last arrival, changes and instances then (nothing new since)
    result: SeriesResult


def _marker(st: SeriesState) -> tuple[float, int, int]:
    return (st.last_arrival, st.changes, st.instances)


class AheadJob(LoopBase):
    _ahead: dict[str, Ahead]
    _ahead_tries: dict[str, int]
    _ahead_more: bool  # another series could be scored ahead now: the loop does not wait for events

    def _score_ahead(self) -> None:
        """Score ahead the open series whose quiet period ends first, if the loop has nothing else to do."""
        self._ahead_more = False
        after = self.config.completion.score_ahead_s
        if after <= 0 or self.due_left:
            return  # due series first
        candidates = self._ahead_candidates(after)
        if not candidates:
            return
        st = candidates[0]
        self._ahead_more = len(candidates) > 1
        uid = st.series_uid
        records = self.tracker.records(uid)
        if not records:
            return
        digest = series_digest(self.tracker.content(uid), self.tracker.skip_counts(uid))
        self._ahead_tries[uid] = self._ahead_tries.get(uid, 0) + 1
        contend = getattr(self.scorer, "set_contended", None)
        if contend is not None:
            contend(self._pool.in_flight() > 0)  # our reading workers hold both cores right now
        try:
            self.tracker.begin_attempt(uid)  # a crash in here counts, as at completion
        except sqlite3.OperationalError:
            return  # not counted (a full disk): not scored ahead either, completion will score it
        try:
            result = self._analyse(st, records)
        except Exception:  # an error the loop reports (the database): not a crash, so not an attempt
            with contextlib.suppress(sqlite3.Error):
                self.tracker.end_attempt(uid)
            raise
        self.tracker.end_attempt(uid)
        self._ahead.pop(uid, None)
        while len(self._ahead) >= AHEAD_KEPT:
            del self._ahead[next(iter(self._ahead))]
        self._ahead[uid] = Ahead(digest, _marker(st), result)
        log.debug("series %s scored ahead of its quiet period's end (%.0f ms)", st.series_key, result.processing_ms)

    def _ahead_candidates(self, after: float) -> list[SeriesState]:
        """Open series seen arriving this run, silent for ``after`` s, not due yet, not held, not scored ahead
        on what they hold now: the one whose quiet period ends first comes first."""
        now = self.clock()
        early_on_count = self.config.completion.early_on_expected_count
        waiting: list[tuple[float, SeriesState]] = []
        for st in self.tracker.open_states():
            uid = st.series_uid
            if uid not in self._arrived or self._ahead_tries.get(uid, 0) >= AHEAD_TRIES \
                    or st.attempts >= AHEAD_MAX_ATTEMPTS:
                continue
            known = self._ahead.get(uid)
            if known is not None and known.marker == _marker(st):
                continue  # scored ahead on what it holds now
            if early_on_count and st.expected is not None and st.instances >= st.expected:
                continue  # due now by its count
            silent = now - self._since(st)
            left = self._quiet_wait(st) - silent
            if silent < after or left <= 0 or self._held(st):
                continue
            waiting.append((left, st))
        waiting.sort(key=lambda item: item[0])
        return [st for _, st in waiting]

    def _take_ahead(self, series_uid: str, digest: str) -> SeriesResult | None:
        """The result scored ahead for this series, if it was computed from exactly these files (else None)."""
        known = self._ahead.pop(series_uid, None)
        if known is None:
            return None
        if known.digest != digest:
            log.debug("series %s changed after it was scored ahead: scored again", known.result.series_key)
            return None
        return known.result

    def _forget_ahead(self, series_uid: str) -> None:
        self._ahead.pop(series_uid, None)
        self._ahead_tries.pop(series_uid, None)
