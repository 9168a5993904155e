"""Scoring and saving: due series -> one result each -> the database, the console, results.jsonl.

Never down: a series that makes scoring raise gets an ``unscored`` result; a series that killed the process
while it was scored (counted in the database before each attempt) is tried ``MAX_SCORING_ATTEMPTS`` times,
then reported unscored. A database that refuses the write (a full disk): the result is shown now, kept in
memory and written (row, results.jsonl line) when the database takes writes again, never shown twice.

Bounded per pass: due series are scored one after the other until ``SCORE_SLICE_S`` has passed (at least
one per pass); the rest stay due, and the loop indexes in between.

Old news is not news (``alerts.max_age_h``): a series whose files were all written before the agent's first
result and longer ago than the limit (the backlog of a first start) is stored as history, never shown; a
result committed but never shown that is older than the limit by the next start is recorded as shown.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from mediqa.agent.config import AgentConfig
from mediqa.agent.dicom.decode import SliceKey
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.loop.base import LoopBase, Unsaved
from mediqa.agent.pipeline import Analysis, analyse_series, unscored_result
from mediqa.agent.report.privacy import clean_text
from mediqa.agent.scoring.base import Scorer, SeriesResult
from mediqa.agent.series.tracker import FILTER_REASONS, SeriesState
from mediqa.agent.state.db import is_corrupt
from mediqa.errors import MediqaError

log = logging.getLogger(__name__)

ResultCallback = Callable[[SeriesResult, int], None]  # result id 0: shown before it could be stored

MAX_SCORING_ATTEMPTS = 3  # scoring attempts a series may cost (the process died each time), then unscored
SCORE_SLICE_S = 1.0  # a pass scores due series until this long has passed (at least one)


class ScoringJob(LoopBase):
    on_result: ResultCallback | None

    def _score_due(self) -> list[SeriesResult]:
        results = []
        started = time.perf_counter()
        contend = getattr(self.scorer, "set_contended", None)  # the learned scorer's; the classical has none
        due = self._due()
        self.due_left = len(due)
        for st in due:
            if contend is not None:
                contend(self._pool.in_flight() > 0)  # our reading workers hold both cores right now
            result = self._score_one(st)
            self.due_left -= 1
            if result is not None:
                results.append(result)
            if time.perf_counter() - started >= SCORE_SLICE_S:
                break  # the others are still due at the next pass
        return results

    def _score_one(self, st: SeriesState) -> SeriesResult | None:
        uid = st.series_uid
        records = self.tracker.records(uid)
        skips = self.tracker.skip_counts(uid)
        digest = series_digest(self.tracker.content(uid), skips)
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
        else:  # scored ahead on exactly these files (``ahead``), or now
            result = self._take_ahead(uid, digest) or self._analyse(st, records)
        notice = _read_notice(len({r.sop_instance_uid for r in records}), unreadable, st.expected)
        if notice:
            result = replace(result, notices=(notice, *result.notices))
        if result.processing_ms == 0.0:
            result = replace(result, processing_ms=(time.perf_counter() - started) * 1000.0)
        return result if self._save(result, st, digest, self._history_age(records)) else None

    def _history_age(self, records: Sequence[InstanceRecord]) -> float | None:
        """How old the series is when it is to be stored as history (``AlertsConfig.history_age``), else None.

        A series without a readable file has no file time: it is news (an alert too many beats one missed).
        """
        if not records:
            return None
        try:
            first = self.store.first_result_at()
        except sqlite3.Error:
            return None
        newest = max(r.mtime_ns for r in records) / 1e9
        return self.config.alerts.history_age(newest, self._started_at if first is None else first, self.clock())

    def _analyse(self, st: SeriesState, records: list[InstanceRecord]) -> SeriesResult:
        try:
            stored = None
            if self.config.scoring.selection == "salient":
                self._forget_saliency_todo(st.series_uid)  # what is missing is computed at scoring now
                stored = self.tracker.saliency(st.series_uid)
            return self._analyse_series(records, self.scorer, self.config, stored_saliency=stored).result
        except MediqaError as exc:
            text = self._scrubber.scrub(str(exc))
            log.info("series %s could not be scored: %s", st.series_key, clean_text(text, 200))
            return unscored_result(records, [text], scorer=self.scorer)
        except sqlite3.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one series is that series' unscored result
            self._internal_error(f"scoring series {st.series_key}", exc)
            return unscored_result(records, [f"internal error ({type(exc).__name__})"], scorer=self.scorer)

    def _analyse_series(self, records: Sequence[InstanceRecord], scorer: Scorer, config: AgentConfig, *,
                        stored_saliency: Mapping[SliceKey, float] | None = None) -> Analysis:
        """The pipeline (``Agent`` points this at ``mediqa.agent.service.analyse_series``)."""
        return analyse_series(records, scorer, config, stored_saliency=stored_saliency)

    def _save(self, result: SeriesResult, st: SeriesState, digest: str, history_age: float | None = None) -> bool:
        """The result row and the series' ``scored`` state in one transaction, then the console line.

        False when the series changed while scoring (it is scored again) or when the result repeats the
        live one (same instances: history only). A database that refuses the write: the result is shown
        now and kept until it can be written. ``history_age``: an old series, stored as history, not shown.
        """
        echo = self.store.is_echo(st.series_uid, digest)
        history = history_age is not None
        try:
            with self.db.transaction() as db:
                if not self.tracker.mark_scored(db, st.series_uid, st.generation, st.changes):
                    log.info("series %s changed while scoring; it will be scored again", st.series_key)
                    return False
                saved = self.store.add(db, result, st.generation, digest=digest, history=history)
        except sqlite3.Error as exc:
            if is_corrupt(exc):
                raise
            self._write_refused(exc)
            shown_at = self.clock() if echo or history else self._show(result, 0)
            self._unsaved[st.series_uid] = Unsaved(result, st, digest, shown_at)
            return not echo
        self._forget_arrival(st.series_uid)
        if saved.echo:
            log.info("series %s scored again on the instances already reported: recorded as history", st.series_key)
            return False
        if history_age is not None:
            log.info("series %s (%s %s) scored as history, no alert: its newest file was written %.1f h ago, before "
                     "the agent first ran here (alerts.max_age_h %g) [result %d]", st.series_key,
                     clean_text(result.modality, 3), result.decision, history_age / 3600.0,
                     self.config.alerts.max_age_h, saved.result_id)
            return True
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
        self.stats.scored(result.decision, result.modality)
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
            history = self._history_age(self.tracker.records(uid)) is not None
            with self.db.transaction() as db:
                saved = None
                if self.tracker.mark_scored(db, uid, u.state.generation, u.state.changes):
                    saved = self.store.add(db, u.result, u.state.generation, digest=u.digest, shown_at=u.shown_at,
                                           history=history)
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
        """Results committed but never shown (killed in between): shown now, marked late; those older than
        ``alerts.max_age_h`` by now are no news any more: recorded as shown (they are in the history)."""
        since = self.config.alerts.live_since(self.clock())
        for rid, result, live, created in self.store.unshown():
            if live and since is not None and created < since:
                log.info("result %d (series %s) was never shown and is older than alerts.max_age_h: kept in the "
                         "history only", rid, result.series_key)
                live = False
            when = self._show(replace(result, shown_late=True), rid) if live else self.clock()
            self._shown(rid, when)

    def _flush_jsonl(self) -> None:
        self.store.flush_jsonl()
        self._resolved("jsonl")


def series_digest(content: list[tuple[str, int | None]], skips: dict[str, int]) -> str:
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
