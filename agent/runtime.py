"""The running service: the agent loop and the pieces around it, started and stopped together.

``mediqa watch`` builds the config and the scorer, then runs one ``Runtime``. It composes what the
config turns on around the ``Agent`` (the loop that owns the state): the console line, the DICOM node
feeding the loop, the SR outbox, the retake notifier, and the outputs attached through ``sinks``. Every
piece runs in its own thread and is fed by callbacks or the state DB, so none can stop or slow scoring:
a failing output logs and carries on.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.agent.service import Agent

if TYPE_CHECKING:
    from mediqa.agent.config import AgentConfig
    from mediqa.agent.report.notify import NotifyConfig
    from mediqa.agent.report.sheets import SheetWriter
    from mediqa.agent.report.sr_outbox import SrOutbox
    from mediqa.agent.report.web import ConsoleServer
    from mediqa.agent.scoring.base import Scorer, SeriesResult
    from mediqa.agent.watch.node_feed import NodeFeed

log = logging.getLogger(__name__)

ResultSink = Callable[["SeriesResult", int], None]


class Runtime:
    """``Agent`` + the configured DICOM node, SR outbox and notifier; ``sinks`` (the console) get every result."""

    def __init__(self, config: AgentConfig, scorer: Scorer, folder: Path, sinks: list[ResultSink]) -> None:
        from mediqa.agent.report.metrics import AgentMetrics
        from mediqa.agent.report.web import check_console

        self.config = config
        self.scorer = scorer
        self._sinks = list(sinks)
        self.outbox: SrOutbox | None = None
        check_console(config.console)  # a bad listen address or a missing token is a config error, now
        self.metrics = AgentMetrics(config.console.site, config.console.station, fleet=config.fleet)
        self.metrics.backend(scorer.backend)
        provenance = getattr(scorer, "provenance", None)
        if provenance is not None:
            self.metrics.model(provenance.model_name, provenance.model_version, provenance.model_sha256 or "")
        self.console: ConsoleServer | None = None
        self.sheets: SheetWriter | None = None
        from mediqa.agent.report.systemd_notify import Heartbeat

        self._heartbeat = Heartbeat.from_env()  # WATCHDOG=1 from the loop itself: a stuck loop is restarted
        self._seen_indexed, self._metrics_at = 0, float("-inf")
        self._seen_skipped: dict[str, int] = {}
        self.agent = Agent(config, scorer, folder, on_result=self._on_result, on_pass=self._on_pass)
        dicom = config.dicom
        if dicom.output.sr:
            from mediqa.agent.report.sr_outbox import SrOutbox

            agent = self.agent
            self.outbox = SrOutbox(dicom.output, config.state_path, db=lambda: agent.db,
                                   records=lambda uid: agent.tracker.records(uid), busy=lambda: agent.working)
        self.notify: NotifyConfig | None = None
        if config.notify.destinations:
            from mediqa.agent.report.notify import NotifyConfig

            self.notify = NotifyConfig.of(config.notify)  # a bad destination is a config error, before the loop
        self.feed: NodeFeed | None = None
        if dicom.node is not None and dicom.node.endpoint is not None:
            from mediqa.agent.watch.node_feed import NodeFeed, spool_path

            agent = self.agent
            self.feed = NodeFeed(agent.events, dicom.node, spool_path(dicom.spool_dir, config.state_path),
                                 db=lambda: agent.db, keep=self.outbox.needs_files if self.outbox else None,
                                 export_folder=folder)
            feed = self.feed
            agent.open_folders = lambda: {str(p) for p in feed.open_folders()}  # due after the release

    def _on_result(self, result: SeriesResult, result_id: int) -> None:
        for sink in self._sinks:
            sink(result, result_id)  # the console line first: the agent shows a result late if this fails
        self.metrics.scored(result.decision, result.modality, self._latency_s(result.series_uid), score=result.score,
                            backend=result.backend)
        if result_id:  # 0: shown before it could be stored (the state DB refused writes)
            if self.console is not None:
                self.console.notify(result_id)
            if self.sheets is not None:
                self.sheets.submit(result_id, functools.partial(self.agent.tracker.records, result.series_uid), result)
        if self.outbox is not None:
            try:
                self.outbox.on_result(result, result_id)
            except Exception as exc:  # noqa: BLE001 - the SR worker also finds the result in the DB later
                log.error("SR outbox: %s", type(exc).__name__)
        if self.notify is not None and result_id:
            self._enqueue_notification(result_id)

    def _on_pass(self) -> None:
        """Once per loop pass (and during long walks): the watchdog ping, and the loop's counters for /metrics."""
        self._heartbeat.beat()
        now = time.monotonic()
        if now - self._metrics_at < 1.0:  # a scrape needs nothing fresher; passes can be 200 ms apart
            return
        self._metrics_at = now
        stats = self.agent.stats.snapshot()
        if stats.files_indexed > self._seen_indexed:
            self.metrics.indexed(stats.files_indexed - self._seen_indexed)
            self._seen_indexed = stats.files_indexed
        for reason, count in stats.files_skipped.items():
            for _ in range(count - self._seen_skipped.get(reason, 0)):
                self.metrics.skipped(reason)
            self._seen_skipped[reason] = count
        self.metrics.queue(stats.queue_length)
        if stats.last_file_event_at is not None:
            self.metrics.file_event(stats.last_file_event_at)
        self.metrics.degraded(self.agent.health().status != "ok")

    def _latency_s(self, series_uid: str) -> float | None:
        """From the series' last indexed instance to now (its result): the figure the histogram shows."""
        try:
            state = self.agent.tracker.state(series_uid)
        except Exception:  # noqa: BLE001 - a degraded state DB: the result still counts, without its latency
            return None
        return None if state is None else self.agent.clock() - state.last_arrival

    def _enqueue_notification(self, result_id: int) -> None:
        """Queue the committed result for every destination. Idempotent: a result shown late (after a crash
        between its commit and this call) is queued then, and never twice."""
        from mediqa.agent.report.notify import enqueue

        assert self.notify is not None
        row = self.agent.db.query_one("SELECT uuid FROM results WHERE id=?", (result_id,))
        if row is not None and row[0]:
            enqueue(self.agent.db, str(row[0]), self.notify)

    def run(self, stop: threading.Event, *, on_ready: Callable[[], object] | None = None) -> None:
        """Start the pieces, run the loop until ``stop``, stop them (feed and outbox before the DB closes)."""
        from mediqa.agent.report.sheets import SheetWriter
        from mediqa.agent.report.web import agent_status, start_console

        agent, console_cfg = self.agent, self.config.console
        with ExitStack() as stack:
            self.sheets = SheetWriter(self.config.state_path, max_age_h=console_cfg.sheets_max_age_h,
                                      max_mb=console_cfg.sheets_max_mb)
            stack.callback(self.sheets.close)
            agent.background[:] = [self.sheets.pending]  # this run's sheets (a run again replaces them)
            metrics = self.metrics
            self.console = start_console(
                console_cfg, self.config.state_path, metrics=metrics, db=lambda: agent.db,
                status=lambda: agent_status(agent, last_file_at=lambda: metrics.last_file_event),
                head_info=getattr(getattr(self.scorer, "card", None), "head_info", None),
                live_max_age_s=self.config.alerts.max_age_s)
            if self.console is not None:
                stack.callback(self.console.stop)
                log.info("console on %s", self.console.url)
            if self.notify is not None:
                from mediqa.agent.report.notify import Notifier

                stack.enter_context(Notifier(self.agent.db, self.notify))
            if self.outbox is not None:
                stack.enter_context(self.outbox)
                agent.background.append(self.outbox.pending)
            if self.feed is not None:
                stack.enter_context(self.feed)  # listens now: a taken port is a DicomNodeError (a MediqaError)
                log.info("DICOM node listening on %s", self.feed.address)
            if on_ready is not None:
                on_ready()
            self.agent.run(stop, watch=True)

    def close(self) -> None:
        self.agent.close()
