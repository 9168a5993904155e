"""Logs journald understands: syslog priorities, structured result fields, no terminal colours.

Three modes, chosen once by ``configure_service_logging`` (stdlib only):

- ``native``: stderr is connected to journald (``$JOURNAL_STREAM`` names stderr's device:inode, as
  systemd sets it for ``StandardError=journal``) and the native socket
  ``/run/systemd/journal/socket`` takes datagrams. Each record is one journal entry with
  ``PRIORITY``, ``SYSLOG_IDENTIFIER``, ``LOGGER``, ``CODE_*`` and, for results, ``MEDIQA_RESULT_ID``,
  ``MEDIQA_SERIES_KEY``, ``MEDIQA_DECISION``... so ``journalctl -u mediqa-agent MEDIQA_DECISION=retake``
  works. A record that cannot be sent (socket gone, too large) is written as a ``prefix`` line instead.
- ``prefix``: stderr is journald but the native socket is not usable: every line (traceback lines
  too) starts with ``<N>``, the syslog priority, which journald strips and keeps (``SyslogLevelPrefix=``).
- ``plain``: a terminal, a pipe, a file, WinSW's log: the usual timestamped lines, no ``<N>``.

Priorities: a RETAKE result is warning (4), so ``journalctl -p warning`` lists retakes and faults;
agent faults (``log.error``/``log.exception``) are error (3), critical is 2, info 6, debug 7.

Under journald the environment also gets ``NO_COLOR=1`` and ``TQDM_DISABLE=1`` (when unset) so that
libraries write no ANSI colours or progress bars into the journal; the unit sets both too, because
tqdm reads its variables when it is first imported. No patient data goes into fields: series appear
by their pseudonymous key (``s-<sha256 prefix>``), never by name or ID.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Mapping
from typing import Any, TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "mediqa"

# MESSAGE_IDs (128-bit, fixed forever) so a site can select result entries across versions:
#   journalctl MESSAGE_ID=5b7e0c1a9f0b4c63a2d86f3f2b9e4a71   (every RETAKE result)
RETAKE_MESSAGE_ID = "5b7e0c1a9f0b4c63a2d86f3f2b9e4a71"
RESULT_MESSAGE_ID = "0e5f3d2c8a6b4f1e9c7d5b3a1f2e4d60"

# Syslog priorities (RFC 5424): what journald stores as PRIORITY.
CRIT, ERR, WARNING, INFO, DEBUG = 2, 3, 4, 6, 7

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PLAIN_DATEFMT = "%H:%M:%S"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"  # journald adds time, host, identifier and pid

_FIELD_NAME = re.compile(r"^[A-Z0-9][A-Z0-9_]{0,63}$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MARK = "_mediqa_service_handler"


def syslog_priority(record: logging.LogRecord) -> int:
    """The journal priority of a record: an explicit ``journal_priority`` extra, else by level."""
    explicit = getattr(record, "journal_priority", None)
    if isinstance(explicit, int) and 0 <= explicit <= 7:
        return explicit
    if record.levelno >= logging.CRITICAL:
        return CRIT
    if record.levelno >= logging.ERROR:
        return ERR
    if record.levelno >= logging.WARNING:
        return WARNING
    if record.levelno >= logging.INFO:
        return INFO
    return DEBUG


def stream_is_journal(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` (default stderr) is the journald stream that ``$JOURNAL_STREAM`` names."""
    env = os.environ if environ is None else environ
    dev, sep, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    target = sys.stderr if stream is None else stream
    try:
        st = os.fstat(target.fileno())
    except (AttributeError, OSError, ValueError):  # no real file descriptor (pytest capture, StringIO)
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class PrefixFormatter(logging.Formatter):
    """Every line of a record, traceback lines included, starts with ``<priority>``."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record)}>"
        return "\n".join(prefix + line for line in (super().format(record).splitlines() or [""]))


def encode_entry(fields: Mapping[str, str]) -> bytes:
    """The native journal protocol: ``KEY=value\\n``, or for values with newlines
    ``KEY\\n<uint64 LE length><value>\\n`` (systemd's ``sd_journal_sendv`` framing)."""
    out = bytearray()
    for key, value in fields.items():
        if not _FIELD_NAME.match(key):
            raise ValueError(f"invalid journal field name {key!r} (A-Z, 0-9, _; not starting with _)")
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode("ascii") + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


def journal_fields(record: logging.LogRecord, message: str, identifier: str = IDENTIFIER) -> dict[str, str]:
    """The fields of one entry: the standard ones, then the record's ``journal_fields`` extra."""
    fields = {
        "MESSAGE": message,
        "PRIORITY": str(syslog_priority(record)),
        "SYSLOG_IDENTIFIER": identifier,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
        "THREAD_NAME": record.threadName or "",
    }
    extra = getattr(record, "journal_fields", None)
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            name = str(key).upper()
            if value is not None and _FIELD_NAME.match(name):
                fields[name] = str(value)
    return fields


class JournalHandler(logging.Handler):
    """Sends each record to journald's native socket; ``fallback`` takes what cannot be sent."""

    def __init__(self, socket_path: str = JOURNAL_SOCKET, identifier: str = IDENTIFIER,
                 fallback: logging.Handler | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.socket_path = socket_path
        self.identifier = identifier
        self.fallback = fallback
        self.failures = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = _ANSI.sub("", self.format(record))
            self._sock.sendto(encode_entry(journal_fields(record, message, self.identifier)), self.socket_path)
        except OSError:  # journald restarting, socket gone, entry over the datagram limit
            self.failures += 1
            if self.fallback is not None:
                self.fallback.handle(record)
        except Exception:  # noqa: BLE001 - a formatting bug: logging's own error report, never a crash
            self.handleError(record)

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            if self.fallback is not None:
                self.fallback.close()
            super().close()


def native_socket_usable(path: str = JOURNAL_SOCKET) -> bool:
    """True when the journal socket at ``path`` exists and accepts a datagram connection."""
    if not hasattr(socket, "AF_UNIX") or not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
    except OSError:
        return False
    return True


def _stream_handler(stream: TextIO, journal: bool) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    if journal:
        handler.setFormatter(PrefixFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, PLAIN_DATEFMT))
    return handler


def configure_service_logging(level: int, *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None,
                              socket_path: str = JOURNAL_SOCKET, identifier: str = IDENTIFIER) -> str:
    """Set up the root logger for ``level``; returns the mode chosen: ``native``, ``prefix`` or ``plain``.

    Replaces the handlers it installed before and plain stderr/stdout stream handlers (the CLI's
    default one), so calling it again, or after ``logging.basicConfig``, leaves exactly one handler.
    ``environ`` is read for ``JOURNAL_STREAM``; the process environment gets ``NO_COLOR`` and
    ``TQDM_DISABLE`` under journald.
    """
    target = sys.stderr if stream is None else stream
    journal = stream_is_journal(target, environ)
    root = logging.getLogger()
    for old in list(root.handlers):
        ours = getattr(old, _MARK, False)
        console = (isinstance(old, logging.StreamHandler) and type(old) is logging.StreamHandler
                   and old.stream in (sys.stderr, sys.stdout, target))
        if ours or console:
            root.removeHandler(old)
            if ours:
                old.close()
    mode = "plain"
    handler: logging.Handler = _stream_handler(target, journal)
    if journal:
        mode = "prefix"
        os.environ.setdefault("NO_COLOR", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
        if native_socket_usable(socket_path):
            mode = "native"
            handler = JournalHandler(socket_path, identifier, fallback=handler)
            handler.setFormatter(logging.Formatter("%(message)s"))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    return mode


def result_fields(result: Mapping[str, Any]) -> dict[str, str]:
    """The structured fields of a result (pseudonymous key, ids, decision; nothing that names a patient)."""
    decision = str(result.get("decision", ""))
    rid = result.get("result_id", result.get("id"))
    fields = {
        "MESSAGE_ID": RETAKE_MESSAGE_ID if decision == "retake" else RESULT_MESSAGE_ID,
        "MEDIQA_RESULT_ID": rid,
        "MEDIQA_SERIES_KEY": result.get("series_key"),
        "MEDIQA_DECISION": decision or None,
        "MEDIQA_SCORE": f"{result['score']:.2f}" if isinstance(result.get("score"), int | float) else None,
        "MEDIQA_MODALITY": result.get("modality"),
        "MEDIQA_SCORER": result.get("scorer"),
    }
    return {k: str(v) for k, v in fields.items() if v is not None and v != ""}


def log_result(logger: logging.Logger, result: Mapping[str, Any], line: str) -> None:
    """Log one result line: WARNING for a RETAKE or an unscored series (priority 4), INFO otherwise.

    ``result`` is the result as a mapping (``result_id`` or ``id``, ``series_key``, ``decision``,
    ``score``, ``modality``, ``scorer``); ``line`` is the console line (colour codes are removed).
    """
    level = logging.WARNING if result.get("decision") in ("retake", "unscored") else logging.INFO
    logger.log(level, "%s", _ANSI.sub("", line), extra={"journal_fields": result_fields(result)}, stacklevel=2)
