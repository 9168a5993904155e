"""The console's HTTP server: the standard library's ``ThreadingHTTPServer`` in a daemon thread.

Why the standard library: the console serves one technologist and a monitoring scrape; a thread per
connection is plenty, server-sent events need nothing more than a socket that stays open, and a
scanner console gains nothing from another dependency (Starlette/uvicorn would bring an event loop and
several packages for the same few routes). Why a thread of its own: a console that crashes or hangs
must never stop or slow scoring. The agent only ever calls ``notify()``, which bumps a counter and
returns; the server reads the state through its own read-only SQLite connection.

``stop()`` ends every stream and closes every open client socket (a browser keeps idle connections and
pre-opened sockets), then joins the threads, so a restart of the console (or a test) leaves nothing behind.
``start_console`` is what ``mediqa watch`` calls; ``serve_console`` runs the same console in a process
of its own (``mediqa console``), beside a running agent, on the same state dir.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mediqa.agent.report.metrics import AgentMetrics
from mediqa.agent.report.web import assets
from mediqa.agent.report.web.app import ConsoleApp, DbProvider
from mediqa.agent.report.web.cards import PatientHook
from mediqa.agent.report.web.config import ConsoleConfig, ConsoleSettings, Listen, check_console
from mediqa.agent.report.web.routes import ConsoleHandler
from mediqa.agent.report.web.security import TOKEN_FILE
from mediqa.agent.report.web.status import AgentStatus

log = logging.getLogger(__name__)

MAX_STREAMS = 16  # open pages (each holds a thread)
MAX_CLIENTS = 64  # connections at once; more are closed at once (a loop in some script, not a person)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, where: Listen, app: ConsoleApp) -> None:
        self.app = app
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._clients_lock = threading.Lock()
        self._closing = False
        self.address_family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
        super().__init__((where.host, where.port), ConsoleHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, remembered so ``close_clients`` can end it."""
        if self._closing or len(self._clients) >= MAX_CLIENTS:
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve, args=(request, client_address), name="mediqa-console-client",
                                  daemon=True)
        with self._clients_lock:
            self._clients[thread] = request
        thread.start()

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken connection is the client's business
            pass
        finally:
            self.shutdown_request(request)
            with self._clients_lock:
                self._clients.pop(threading.current_thread(), None)

    def close_clients(self, timeout: float) -> None:
        self._closing = True
        with self._clients_lock:
            clients = dict(self._clients)
        for sock in clients.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in clients:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("console: a connection failed")


class ConsoleServer:
    """A running console; ``notify()`` from the agent's thread, ``stop()`` at the end."""

    def __init__(self, app: ConsoleApp, where: Listen) -> None:
        self.app = app
        self.where = where
        self._httpd = _HTTPServer(where, app)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mediqa-console", daemon=True)
        self._stopped = False

    def start(self) -> ConsoleServer:
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.where.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/"

    def notify(self, result_id: int | None = None) -> None:
        """A result was committed: wake the open pages now (never blocks, never raises)."""
        del result_id
        with contextlib.suppress(Exception):  # the agent's thread must not care
            self.app.beacon.bump()

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.app.stopping.set()
        self.app.beacon.bump()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.close_clients(timeout)
        self._httpd.server_close()
        self._thread.join(timeout)
        self.app.close()

    def __enter__(self) -> ConsoleServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_console(cfg: ConsoleSettings, state_dir: Path, *, status: Callable[[], AgentStatus] | None = None,
                  metrics: AgentMetrics | None = None, db: DbProvider | None = None,
                  head_info: Mapping[str, Mapping[str, Any]] | None = None, patient_name: PatientHook | None = None,
                  heartbeat_s: float = 5.0, poll_s: float = 0.25,
                  live_max_age_s: float | None = None) -> ConsoleServer | None:
    """Start the console in its own thread; None when ``listen`` is off or the address cannot be bound.

    ``live_max_age_s`` (``AlertsConfig.max_age_s``): results older than this leave the live view.
    Raises ``ConfigError`` only for invalid settings (call ``check_console`` at start to fail early).
    """
    where = check_console(cfg)
    if where is None:
        return None
    try:
        assets.url("console.js")  # the page's files: missing from an installation that left them out
    except OSError as exc:
        log.error("console: its page files cannot be read (%s); the agent runs on without it",
                  exc.strerror or type(exc).__name__)
        return None
    app = ConsoleApp(cfg, state_dir, where, status=status, metrics=metrics, db=db, head_info=head_info,
                     patient_name=patient_name, heartbeat_s=heartbeat_s, poll_s=poll_s,
                     live_max_age_s=live_max_age_s)
    try:
        server = ConsoleServer(app, where).start()
    except OSError as exc:
        app.close()
        log.error("console: cannot listen on %s (%s); the agent runs on without it", where,
                  exc.strerror or type(exc).__name__)
        return None
    if app.guard.required:
        log.info("console on %s (token required: console.token, or the %s file in the state dir)", server.url,
                 TOKEN_FILE)
    else:
        log.info("console on %s", server.url)
    return server


def serve_console(config: Any, state_dir: Path | None = None, *, stop: threading.Event | None = None,
                  on_ready: Callable[[ConsoleServer], None] | None = None) -> int:
    """``mediqa console``: the same console in its own process, on the agent's state dir, until ``stop``.

    ``config`` is an ``AgentConfig`` (its ``console`` block, else the defaults). Feedback is written
    through a ``StateDB`` of its own; the agent's health is unknown here (the strip says so). Returns 0,
    or 1 when the console could not start.
    """
    cfg: ConsoleSettings = getattr(config, "console", None) or ConsoleConfig()
    folder = Path(state_dir) if state_dir is not None else Path(config.state_path)
    alerts = getattr(config, "alerts", None)
    server = start_console(cfg, folder, head_info=_head_info(config),
                           live_max_age_s=alerts.max_age_s if alerts is not None else None)
    if server is None:
        return 1
    if on_ready is not None:
        on_ready(server)
    done = stop or threading.Event()
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _head_info(config: Any) -> Mapping[str, Mapping[str, Any]]:
    """The learned model's head descriptions (for the bars' meaning), when the config names one."""
    scoring = getattr(config, "scoring", None)
    if scoring is None or getattr(scoring, "scorer", "") != "learned":
        return {}
    try:
        from mediqa.agent.scoring.models import resolve_model
        from mediqa.model_card import read_card

        return dict(read_card(resolve_model(scoring.model)).head_info)
    except Exception as exc:  # noqa: BLE001 - the bars lose their ranges, nothing more
        log.info("console: no model card for the measures (%s)", type(exc).__name__)
        return {}
