"""Completion checks: which series are due now, and what keeps one that looks complete waiting.

Due: what the tracker says (quiet since its last file was indexed, its expected count reached, or
completed before a crash), plus open series quiet since their newest file was *written* (``intake``
remembers it for this run): a burst's indexing lag does not lengthen every series' quiet period. With
``completion.adaptive`` the quiet period of a series without an expected count may end early, when its
own arrival rhythm has clearly stopped (``rhythm``).

Held (never wrong-and-live): a series is not due while a file is pending (settling, or found but not yet
indexed) in any folder holding its files; before the first walk after a start has seen the backlog; or,
for an open series, within one quiet period after a start (what arrived while the agent was stopped is
unknown); or while one of its files changed since it was read (it is read again). A pending file holds
its folder for at most ``max(300 s, 30 x quiet period)`` from when it was first seen.
"""

from __future__ import annotations

import logging
import os

from mediqa.agent.loop.base import LoopBase
from mediqa.agent.loop.rhythm import Rhythm, adaptive_wait
from mediqa.agent.series.tracker import SeriesState
from mediqa.errors import ConfigError

log = logging.getLogger(__name__)

ARRIVED_KEPT = 10000  # open series whose newest file's time is remembered (bounded memory)


def check_adaptive(adaptive_k: float, adaptive_min_s: float) -> None:
    """``completion.adaptive_k`` and ``completion.adaptive_min_s`` make sense (checked when the agent starts)."""
    if adaptive_k <= 0:
        raise ConfigError(f"completion.adaptive_k must be positive, got {adaptive_k}")
    if adaptive_min_s < 0:
        raise ConfigError(f"completion.adaptive_min_s must not be negative, got {adaptive_min_s}")


class CompletionJob(LoopBase):
    def _due(self) -> list[SeriesState]:
        """Series to score now, in the order they began (see the module docstring)."""
        due = self.tracker.due(hold=self._hold)
        taken = {st.series_uid for st in due}
        now = self.clock()
        for uid in list(self._arrived):
            if uid in taken:
                continue
            st = self.tracker.state(uid)
            if st is None or st.state not in ("open", "reopened"):
                self._forget_arrival(uid)  # scored (or complete: the tracker has it) or gone
                continue
            if now - self._since(st) >= self._quiet_wait(st) and not self._hold(st):
                due.append(st)
        return due

    def _since(self, st: SeriesState) -> float:
        """When the quiet period of an open series began: its newest file's write time when this run indexed
        it (else when it was indexed), never before the agent started."""
        since = st.last_arrival
        written = self._arrived.get(st.series_uid)
        if written is not None and st.last_arrival <= self._applied.get(st.series_uid, float("-inf")):
            since = min(since, written)  # nothing changed the series after this run last recorded a file of it
        return max(since, self._started_at)

    def _quiet_wait(self, st: SeriesState) -> float:
        """The series' quiet period: the configured one, or shorter by the adaptive rule."""
        completion = self.config.completion
        quiet = completion.quiet_for(st.modality)
        if not completion.adaptive or st.expected is not None:
            return quiet  # a series that announces its count waits for it (or the quiet period)
        rhythm = self._rhythms.get(st.series_uid)
        if rhythm is None or rhythm.last is None or rhythm.last <= self._started_at:
            return quiet  # its rhythm was not seen live (indexed before a restart, or written before the start)
        return adaptive_wait(rhythm.gaps, quiet, completion.adaptive_k, completion.adaptive_min_s)

    def _arrival(self, series_uid: str, written: float, applied_at: float) -> None:
        """A file of the series was recorded at ``applied_at``; it was written at ``written`` (agent clock)."""
        known = self._arrived.pop(series_uid, None)
        if known is None and len(self._arrived) >= ARRIVED_KEPT:
            self._forget_arrival(next(iter(self._arrived)))
        self._arrived[series_uid] = max(written, known if known is not None else float("-inf"))
        self._applied[series_uid] = applied_at
        if self.config.completion.adaptive:
            self._rhythms.setdefault(series_uid, Rhythm()).add(written)

    def _forget_arrival(self, series_uid: str) -> None:
        self._forget_ahead(series_uid)
        self._arrived.pop(series_uid, None)
        self._applied.pop(series_uid, None)
        self._rhythms.pop(series_uid, None)

    def _hold(self, st: SeriesState) -> bool:
        """True while a series that looks complete must still wait (see the module docstring)."""
        if st.state in ("open", "reopened"):
            early = (self.config.completion.early_on_expected_count and st.expected is not None
                     and st.instances >= st.expected)
            if not early and self.clock() - self._since(st) < self._quiet_wait(st):
                return True  # a quiet period after a start: what arrived while the agent was stopped is unknown
        return self._held(st) or self._files_changed(st)

    def _held(self, st: SeriesState) -> bool:
        """What holds a series besides its quiet period and its files changed since they were read (``_hold``;
        scoring ahead asks only this: a changed file is read again at completion, and changes its digest)."""
        if not self._scan_done or not self._seeded or st.series_uid in self._unsaved:
            return True
        folders = self.tracker.folders(st.series_uid)
        if self._folders_busy(folders):
            return True
        # its DICOM association is still open: more instances may come
        return self.open_folders is not None and bool(folders & self.open_folders())

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
