"""What the loop has done, for metrics and health checks: ``Agent.stats`` (an ``AgentStats``).

The loop updates it; another thread (a metrics endpoint, the systemd wiring in ``mediqa watch``) may read
it at any time through ``snapshot()``, which copies it under a lock (the counters are plain ints and
dicts: never iterate the live object from another thread).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class AgentStats:
    """Counters of the agent loop since it started (a restart starts them at zero again).

    - ``files_indexed``: files whose header was recorded (new, changed or the same content again);
    - ``files_skipped``: files skipped for good, per reason (``not_dicom``, ``localizer``, ``internal: ...``);
    - ``queue_length``: files pending now (settling, or found and not yet indexed);
    - ``last_file_event_at``: when the loop last took a file event (the agent's clock), None before any;
    - ``series_scored``: results shown, per (decision, modality), e.g. ``("retake", "CT")``;
    - ``passes``: loop passes run.
    """

    files_indexed: int = 0
    files_skipped: dict[str, int] = field(default_factory=dict)
    queue_length: int = 0
    last_file_event_at: float | None = None
    series_scored: dict[tuple[str, str], int] = field(default_factory=dict)
    passes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def indexed(self, n: int = 1) -> None:
        with self._lock:
            self.files_indexed += n

    def skipped(self, reason: str) -> None:
        with self._lock:
            self.files_skipped[reason] = self.files_skipped.get(reason, 0) + 1

    def scored(self, decision: str, modality: str) -> None:
        key = (decision, modality or "")
        with self._lock:
            self.series_scored[key] = self.series_scored.get(key, 0) + 1

    def pass_done(self, queue_length: int) -> None:
        with self._lock:
            self.passes += 1
            self.queue_length = queue_length

    def file_event(self, when: float) -> None:
        self.last_file_event_at = when

    def snapshot(self) -> AgentStats:
        """A copy taken under the lock: safe to read from another thread."""
        with self._lock:
            return AgentStats(self.files_indexed, dict(self.files_skipped), self.queue_length, self.last_file_event_at,
                              dict(self.series_scored), self.passes)
