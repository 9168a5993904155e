"""``mediqa watch``: the agent. Watches the export folder (read-only) and reports every series."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time

from mediqa.cli.common import add_config_options, config_from_args, ensure_folder, log_config

log = logging.getLogger("mediqa.watch")

HELP = """\
Watch a scanner's DICOM export folder and score each series once it is complete (quiet for a
while, or its expected instance count reached). One line per series; a retake is highlighted and
logged as a WARNING. The export folder is only read: state and results go to the state dir.

examples:
  mediqa watch --folder /data/export
  mediqa watch --folder /mnt/share --set watch.mode=polling   network shares get no file events
  mediqa watch --config /etc/mediqa/agent.yaml                the service's way
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="run the agent on an export folder", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", help="the export folder (overrides watch.folder)")
    p.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                   help="stop after this long with nothing pending (demos, tests)")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.agent.loop.memory import avoid_huge_pages, freeze_startup_objects, thaw_startup_objects, tune_malloc
    from mediqa.agent.report import systemd_notify
    from mediqa.agent.report.console import ConsoleReporter
    from mediqa.agent.report.journal_log import configure_service_logging, stream_is_journal
    from mediqa.agent.report.privacy import PathScrubber
    from mediqa.agent.runtime import Runtime
    from mediqa.agent.scoring.factory import make_scorer
    from mediqa.agent.service import check_paths

    os.umask(0o077)  # everything the agent creates (state, results, engines) is owner-only
    tune_malloc()  # before any thread starts: pixel buffers go back to the system when freed
    avoid_huge_pages()  # and no huge pages on them (khugepaged grew the idle agent)
    config = config_from_args(args)
    if stream_is_journal():  # under systemd: priorities and fields journald understands, no ANSI noise
        configure_service_logging(logging.getLogger().level)
    folder = ensure_folder(args.folder, config)
    check_paths(config, folder)  # before the scorer: nothing is built or written inside the export folder
    scrubber = PathScrubber([str(folder.resolve())])
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:  # no export path in a log line or traceback, from here to the end
        handler.addFilter(scrubber)
    try:
        log_config(config)
        scorer = make_scorer(config)
        log.info("scorer %s on %s ready", scorer.name, scorer.backend)
        reporter = ConsoleReporter(config.report.color)
        runtime = Runtime(config, scorer, folder, sinks=[reporter])
        agent = runtime.agent
        # a restart never hides an unacknowledged alert (one older than alerts.max_age_h is in the history)
        reporter.remind(agent.store.live("retake", since=config.alerts.live_since(time.time())))
        stop = threading.Event()

        def on_signal(*_: object) -> None:
            systemd_notify.stopping()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        if args.exit_when_idle is not None:
            threading.Thread(target=_stop_when_idle, args=(agent, stop, args.exit_when_idle), daemon=True).start()
        def on_ready() -> None:
            frozen = freeze_startup_objects()  # built once, kept for good: no full collection walks them again
            log.debug("start-up made %d objects, kept out of full garbage collections", frozen)
            systemd_notify.ready(f"watching with {scorer.name} on {scorer.backend}")

        # READY=1 once everything listens: the model is warmed up, the state DB open (Type=notify waits for it).
        runtime.run(stop, on_ready=on_ready)
        health = agent.health()
        runtime.close()
        if health.status != "ok":
            log.warning("stopped while degraded: %s", "; ".join(health.reasons))
        log.info("stopped")
        return 0
    finally:
        thaw_startup_objects()
        for handler in handlers:
            handler.removeFilter(scrubber)


def _stop_when_idle(agent: object, stop: threading.Event, seconds: float) -> None:
    import time

    quiet_since = time.monotonic()
    while not stop.wait(0.25):
        if agent.idle():  # type: ignore[attr-defined]
            if time.monotonic() - quiet_since >= seconds:
                stop.set()
        else:
            quiet_since = time.monotonic()
