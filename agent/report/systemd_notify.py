"""The systemd notify protocol (``sd_notify(3)``), stdlib only: READY, WATCHDOG, STATUS, STOPPING.

Under ``Type=notify`` systemd puts an ``AF_UNIX`` datagram socket in ``$NOTIFY_SOCKET`` (a path, or
an abstract name written ``@name``); the service sends newline-separated ``KEY=VALUE`` assignments.
Outside systemd (a terminal, a test, Windows) ``$NOTIFY_SOCKET`` is unset and every call is a no-op
that returns False, so the agent calls these unconditionally.

When the agent calls them (the unit is ``packaging/systemd/mediqa-agent.service``):
- ``ready()`` once, after the scorer has warmed up: systemd holds the unit in "activating" until then
  (``TimeoutStartSec=``), so a model that cannot load fails the start instead of looking healthy;
- ``Heartbeat.beat()`` (or ``watchdog()``) from the main loop: with ``WatchdogSec=`` set, a loop that
  stops beating for that long is killed (SIGABRT) and restarted;
- ``status(text)`` for ``systemctl status`` (no patient data: counts and states only);
- ``stopping()`` when SIGTERM arrives, before the current series is finished.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The address to send to: a filesystem path, or ``"\\0name"`` for an abstract ``@name`` socket.

    None when not under systemd, and for address kinds this client does not speak (``vsock:``, relative).
    """
    env = os.environ if environ is None else environ
    addr = env.get(NOTIFY_SOCKET, "")
    if addr.startswith("@") and len(addr) > 1:
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    if addr:
        log.debug("NOTIFY_SOCKET=%r is not a unix socket path or @abstract name: notifications are off", addr)
    return None


def notify(*assignments: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``KEY=VALUE`` assignments as one datagram. True when sent; False when off or it failed.

    A failure is logged at debug level and never raised: a notification must not take the agent down.
    """
    address = socket_address(environ)
    if address is None or not assignments:
        return False
    for item in assignments:
        if "=" not in item or "\n" in item:
            raise ValueError(f"a notify assignment is one KEY=VALUE line, got {item!r}")
    payload = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, address)
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())


def ready(status_text: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """READY=1: start-up is complete (send after the model warm-up). Optionally with a STATUS line."""
    items = ["READY=1"] + ([f"STATUS={_one_line(status_text)}"] if status_text else [])
    return notify(*items, environ=environ)


def watchdog(environ: Mapping[str, str] | None = None) -> bool:
    """WATCHDOG=1: the main loop is alive (send at least every ``watchdog_interval_s() / 2``)."""
    return notify("WATCHDOG=1", environ=environ)


def status(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """STATUS=...: one line shown by ``systemctl status`` (counts and states, never patient data)."""
    return notify(f"STATUS={_one_line(text)}", environ=environ)


def stopping(environ: Mapping[str, str] | None = None) -> bool:
    """STOPPING=1: shutdown has begun (send when SIGTERM arrives)."""
    return notify("STOPPING=1", environ=environ)


def extend_timeout(seconds: float, environ: Mapping[str, str] | None = None) -> bool:
    """EXTEND_TIMEOUT_USEC=...: ask for more start-up (or stop) time, e.g. while an engine loads."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}", environ=environ)


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd expects (``WatchdogSec=``) in seconds, or None when there is none.

    None also when ``$WATCHDOG_PID`` names another process: the watchdog is then not ours to feed.
    """
    env = os.environ if environ is None else environ
    raw = env.get(WATCHDOG_USEC, "")
    pid = env.get(WATCHDOG_PID, "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Heartbeat:
    """Rate-limited WATCHDOG=1 for a loop that ticks often: ``beat()`` sends at most every interval/2.

    Call ``beat()`` on every pass of the main loop (and inside long walks); it costs a clock read
    when nothing is due. Inert (``enabled`` False) when systemd set no watchdog.
    """

    def __init__(self, interval_s: float | None, clock: Callable[[], float] = time.monotonic,
                 environ: Mapping[str, str] | None = None) -> None:
        self.period_s = interval_s / 2 if interval_s else None
        self._clock = clock
        self._environ = environ
        self._last: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> Heartbeat:
        return cls(watchdog_interval_s(environ), clock=clock, environ=environ)

    @property
    def enabled(self) -> bool:
        return self.period_s is not None

    def beat(self) -> bool:
        """Send WATCHDOG=1 if half the interval has passed since the last one. True when one was sent."""
        if self.period_s is None:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self.period_s:
            return False
        self._last = now
        return watchdog(self._environ)
