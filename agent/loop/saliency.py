"""Saliency as files arrive, in a bounded slice of each pass, so completion has little left to compute.

Selection looks only at a long series' candidate slices (``select.saliency.candidate_indices``, every
slice up to ``CANDIDATES_MAX``), and completion decodes the candidates whose saliency is missing. So the
arrivals that will likely be candidates are computed first (``_likely_candidate``: the series announces
its slice count and the file's InstanceNumber, read in the direction the positions run, falls on the
candidate stride), those of series that announce nothing next, and known non-candidates not at all.

Each pass computes for at most ``SALIENCY_BUSY_S`` while files wait to be indexed (indexing comes first:
it must keep up with the console) and ``SALIENCY_IDLE_S`` otherwise; the loop does not sleep while some
is left. At most ``SALIENCY_WAITING_MAX`` arrivals wait (a bigger backlog is computed at completion, for
its candidates only).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque

import numpy as np

from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.loop.base import LoopBase
from mediqa.agent.select.saliency import CANDIDATES_MAX, candidate_indices, record_saliency

log = logging.getLogger(__name__)

SALIENCY_BUSY_S = 0.04  # a pass's saliency while files wait to be indexed (likely candidates only)
SALIENCY_IDLE_S = 0.05  # ... and while none does (the loop then does not wait for events)
SALIENCY_WAITING_MAX = 4096  # arrivals waiting for their saliency (bounded memory)
DIRECTIONS_KEPT = 1000  # series whose slice direction is remembered


class SaliencyJob(LoopBase):
    def _queue_saliency(self, records: list[InstanceRecord]) -> None:
        for record in records:
            if len(self._saliency_first) + len(self._saliency_todo) >= SALIENCY_WAITING_MAX:
                return  # computed at completion, for the candidates only
            likely = self._likely_candidate(record)
            if likely is True:
                self._saliency_first.append(record)
            elif likely is None:
                self._saliency_todo.append(record)

    def _likely_candidate(self, record: InstanceRecord) -> bool | None:
        """True: probably a candidate slice of its series; False: probably not; None: cannot tell."""
        n = record.images_in_acquisition
        if record.is_multiframe or record.mosaic_tiles or not n or n <= 0:
            return None
        if n <= CANDIDATES_MAX:
            return True  # every slice of a short series competes
        i = record.instance_number
        direction = self._direction(record)
        if i is None or direction is None or not 1 <= i <= n:
            return None
        index = i - 1 if direction > 0 else n - i
        return index in _candidates(n)

    def _direction(self, record: InstanceRecord) -> int | None:
        """+1 when positions along the normal grow with InstanceNumber, -1 when they fall; None until known."""
        uid = record.series_uid
        known = self._directions.get(uid)
        if isinstance(known, int):
            return known
        geom = record.frames[0] if record.frames else None
        if geom is None or geom.position is None or geom.orientation is None or record.instance_number is None:
            return None
        row, col = np.array(geom.orientation[:3]), np.array(geom.orientation[3:])
        here = (record.instance_number, float(np.dot(geom.position, np.cross(row, col))))
        if known is None:
            if len(self._directions) >= DIRECTIONS_KEPT:
                del self._directions[next(iter(self._directions))]
            self._directions[uid] = here
            return None
        (i0, p0), (i1, p1) = known, here
        if i0 == i1 or abs(p1 - p0) < 1e-6:
            return None
        direction = 1 if (i1 - i0) * (p1 - p0) > 0 else -1
        self._directions[uid] = direction
        return direction

    def _saliency_step(self, busy: bool) -> None:
        """Saliency of arrived slices for a bounded time (likely candidates first)."""
        deadline = time.perf_counter() + (SALIENCY_BUSY_S if busy else SALIENCY_IDLE_S)
        while time.perf_counter() < deadline:
            if self._saliency_first:
                record = self._saliency_first.popleft()
            elif self._saliency_todo and not busy:
                record = self._saliency_todo.popleft()
            else:
                return
            try:
                values = record_saliency(record)
            except Exception as exc:  # noqa: BLE001 - saliency is an optimisation; scoring retries it
                log.debug("saliency on arrival failed for %s: %s", self.labels.label(record.path), type(exc).__name__)
                continue
            self.tracker.store_saliency(record.series_uid, values)

    def _saliency_waiting(self) -> bool:
        return bool(self._saliency_first or self._saliency_todo)

    def _forget_saliency_todo(self, series_uid: str) -> None:
        self._saliency_first = _without(self._saliency_first, series_uid)
        self._saliency_todo = _without(self._saliency_todo, series_uid)
        self._directions.pop(series_uid, None)


def _without(todo: deque[InstanceRecord], series_uid: str) -> deque[InstanceRecord]:
    if any(r.series_uid == series_uid for r in todo):
        return deque(r for r in todo if r.series_uid != series_uid)
    return todo


@functools.lru_cache(maxsize=64)
def _candidates(n: int) -> frozenset[int]:
    return frozenset(int(i) for i in candidate_indices(n))
