"""Prometheus metrics of one agent, for fleet monitoring: how much it scores, how fast, and whether it is well.

The registry is the agent's own ``CollectorRegistry`` (never the process-global one: tests, the CLI and a
second agent in one process must not see each other's counters), rendered by the console's ``/metrics``.
Every series carries the constant labels ``site`` and ``station`` (from ``console.site`` / ``console.station``)
so a fleet's dashboards can tell consoles apart; the Python client has no constant labels, so they are the
first two label names of every metric and ``AgentMetrics`` fills them in. An empty ``console.station`` is
the host name: one agent serves one scanner from its console PC (the header records carry no StationName,
and a label taken from the images would change with the first series).

For the fleet's alerting rules (packaging/prometheus/) the agent also publishes what they compare with
(``fleet:``, agent/config_fleet.py): its calibrated alert-rate band, its "deaf" gap, whether it is inside its
working hours (local time, computed when scraped), whether its backend runs on a GPU, and the distribution
of its series scores (a histogram, for the median's drift).

The service calls the ``AgentMetrics`` methods from its loop; each is a few dictionary operations, never
I/O, and never raises into the loop. Label values are bounded: skip reasons are cut to their kind
(``internal: KeyError`` -> ``internal``) so a metric cannot grow one series per exception type or file.
The age of the last file event is computed when scraped, from the timestamp the loop last reported.
No label ever holds a patient identifier, a path or a series description.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from mediqa.agent.config_fleet import FleetConfig

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
SCORE_BUCKETS = tuple(i / 4 for i in range(1, 17))  # 0.25 .. 4.0: the median to about 0.1 by interpolation
GPU_BACKENDS = frozenset({"tensorrt", "onnxruntime-cuda"})
CONST = ("site", "station")
_LABEL = re.compile(r"[^A-Za-z0-9_.:-]+")


def _label(value: object, limit: int = 40) -> str:
    """A bounded, printable label value (header text or an exception name never becomes a wild label)."""
    text = _LABEL.sub("_", str(value or "")).strip("_")
    return text[:limit] or "unknown"


def _reason(reason: str) -> str:
    return _label(str(reason).split(":", 1)[0].strip())


class AgentMetrics:
    """The agent's metrics; thread-safe (prometheus-client's metrics are), cheap, never raising."""

    def __init__(self, site: str = "", station: str = "", clock: Callable[[], float] = time.time,
                 fleet: FleetConfig | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._const = {"site": _label(site, 64) if site else "", "station": _label(station or _host(), 64)}
        self._clock = clock
        self._lock = threading.Lock()
        self._last_event: float | None = None
        self._backend_name = ""
        r = self.registry
        self._scored = Counter("mediqa_series_scored", "Series with a result, by decision and modality",
                               [*CONST, "decision", "modality"], registry=r)
        self._alerts = Counter("mediqa_alerts", "Retake alerts raised", [*CONST, "modality"], registry=r)
        self._indexed = Counter("mediqa_files_indexed", "DICOM files indexed", CONST, registry=r)
        self._skipped = Counter("mediqa_files_skipped", "Files skipped, by reason", [*CONST, "reason"], registry=r)
        self._latency = Histogram("mediqa_last_file_to_result_seconds",
                                  "Time from a series' last file to its result", [*CONST, "modality"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._queue = Gauge("mediqa_queue_files", "Files seen and not yet indexed", CONST, registry=r)
        self._backend = Gauge("mediqa_backend_info", "Inference backend in use (1)", [*CONST, "backend"], registry=r)
        self._model = Gauge("mediqa_model_info", "Model in use (1)", [*CONST, "name", "version", "sha256"],
                            registry=r)
        self._age = Gauge("mediqa_last_file_event_age_seconds", "Seconds since the last file event (NaN: none yet)",
                          CONST, registry=r)
        self._degraded = Gauge("mediqa_degraded", "1 while the agent is degraded", CONST, registry=r)
        self._score = Histogram("mediqa_series_score", "Scores of scored series (0 bad .. 4 excellent)",
                                [*CONST, "modality"], buckets=SCORE_BUCKETS, registry=r)
        self._gpu = Gauge("mediqa_backend_gpu", "1 while the backend in use runs on a GPU", CONST, registry=r)
        self._band = Gauge("mediqa_alert_rate_band", "Calibrated alert-rate band of this station (fraction of "
                           "scored series; fleet.alert_rate_band)", [*CONST, "bound"], registry=r)
        self._deaf = Gauge("mediqa_deaf_after_seconds", "Gap without file events, in working hours, after which "
                           "the agent counts as deaf (fleet.deaf_after_s)", CONST, registry=r)
        self._hours = Gauge("mediqa_working_hours", "1 inside this station's working hours (local time; "
                            "fleet.working_hours, fleet.working_days)", CONST, registry=r)
        self._fleet(fleet)
        self._age.labels(**self._const).set_function(self._event_age)
        self._queue.labels(**self._const).set(0)
        self._degraded.labels(**self._const).set(0)
        self._indexed.labels(**self._const)  # present (at 0) from the first scrape

    # --- what the service calls -------------------------------------------------------------------
    def scored(self, decision: str, modality: str, latency_s: float | None = None, score: float | None = None,
               backend: str | None = None) -> None:
        """One result committed; ``latency_s`` from the series' last file to the result; ``backend`` the one
        that scored it (a fall back from the GPU shows at the next result)."""
        try:
            mod = _label(modality or "unknown", 8)
            self._scored.labels(**self._const, decision=_label(decision, 16), modality=mod).inc()
            if decision == "retake":
                self._alerts.labels(**self._const, modality=mod).inc()
            if decision in ("ok", "retake") and score is not None and math.isfinite(score):
                self._score.labels(**self._const, modality=mod).observe(score)
            if backend and backend != self._backend_name:
                self.backend(backend)
            if latency_s is not None and math.isfinite(latency_s) and latency_s >= 0:
                self._latency.labels(**self._const, modality=mod).observe(latency_s)
        except Exception as exc:  # noqa: BLE001 - metrics never stop the loop
            log.debug("metrics: %s", type(exc).__name__)

    def indexed(self, n: int = 1) -> None:
        if n > 0:
            self._indexed.labels(**self._const).inc(n)

    def skipped(self, reason: str) -> None:
        self._skipped.labels(**self._const, reason=_reason(reason)).inc()

    def queue(self, n: int) -> None:
        self._queue.labels(**self._const).set(max(0, int(n)))

    def file_event(self, ts: float | None = None) -> None:
        with self._lock:
            self._last_event = self._clock() if ts is None else float(ts)

    def backend(self, name: str) -> None:
        with self._lock:
            self._backend_name = name
            self._backend.clear()
            self._backend.labels(**self._const, backend=_label(name, 32)).set(1)
            self._gpu.labels(**self._const).set(1 if name in GPU_BACKENDS else 0)

    def model(self, name: str, version: str, sha256: str) -> None:
        with self._lock:
            self._model.clear()
            self._model.labels(**self._const, name=_label(name, 64), version=_label(version, 32),
                               sha256=_label(sha256, 64)).set(1)

    def degraded(self, flag: bool) -> None:
        self._degraded.labels(**self._const).set(1 if flag else 0)

    def _fleet(self, fleet: FleetConfig | None) -> None:
        from mediqa.agent.config_fleet import FleetConfig

        fleet = fleet or FleetConfig()
        low, high = fleet.alert_rate_band
        self._band.labels(**self._const, bound="low").set(low)
        self._band.labels(**self._const, bound="high").set(high)
        self._deaf.labels(**self._const).set(fleet.deaf_after_s)
        self._hours.labels(**self._const).set_function(lambda: 1.0 if fleet.working_now(self._clock()) else 0.0)

    # --- what the console reads -------------------------------------------------------------------
    @property
    def last_file_event(self) -> float | None:
        with self._lock:
            return self._last_event

    def _event_age(self) -> float:
        last = self.last_file_event
        return float("nan") if last is None else max(0.0, self._clock() - last)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


def _host() -> str:
    """The station label when ``console.station`` is empty: this console PC's host name (first part)."""
    return socket.gethostname().split(".", 1)[0] or "unknown"


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a model file, for ``AgentMetrics.model`` (read once at start)."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
