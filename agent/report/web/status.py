"""What the status strip and ``/healthz`` say about the agent: folder, backend, last file, queue, health.

The service passes a provider (a callable returning ``AgentStatus``); ``agent_status(agent)`` builds one
from a running ``Agent`` by reading a few of its attributes (no import of the service: it imports us).
It runs in the console's thread, never the agent's, and is cached for a second (``StatusCache``) so many
open pages cost one look. A console started apart from the agent (``serve_console``) has no provider:
then the strip shows what the state database says (last arrival, series arriving) and that the
agent's health is unknown there.

No patient path ever appears: the folder is shown by its last component only, and the reasons come from
the agent's own health, which names files by pseudonymous labels.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mediqa.agent.report.privacy import clean_text

log = logging.getLogger(__name__)

EXPORT_UNREADABLE = "the export folder cannot be read"
NO_BACKEND = "no inference backend"
STATE_DEGRADED = "the state database cannot be read"


@dataclass(frozen=True)
class AgentStatus:
    folder: str = ""  # a label (the folder's name), never a full path
    backend: str = ""
    scorer: str = ""
    last_file_at: float | None = None  # epoch seconds of the last file event
    queue: int | None = None  # files seen and not yet indexed
    reasons: tuple[str, ...] = ()  # why the agent is degraded (empty: ok)
    export_readable: bool = True
    state_ok: bool = True
    in_process: bool = True  # False: the console runs apart from the agent and cannot see its health

    @property
    def degraded(self) -> bool:
        return bool(self.reasons)

    def to_json(self, now: float) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["degraded"] = self.degraded
        out["last_file_age_s"] = None if self.last_file_at is None else max(0.0, now - self.last_file_at)
        return out


def folder_label(path: str | os.PathLike[str]) -> str:
    """The export folder as the strip names it: its last component only."""
    return clean_text(os.path.basename(os.path.normpath(os.fspath(path))) or "/", 40)


def agent_status(agent: Any, *, last_file_at: Callable[[], float | None] | None = None,
                 extra: Callable[[], Sequence[str]] | None = None) -> AgentStatus:
    """An ``AgentStatus`` from a running ``Agent`` (attributes read defensively: it keeps evolving).

    ``last_file_at``: when the last file event came (``AgentMetrics.last_file_event``); ``extra``: more
    reasons the caller knows (e.g. "the agent loop stopped" when its thread died).
    """
    reasons: list[str] = []
    try:
        health = agent.health()
        reasons.extend(clean_text(str(r), 240) for r in getattr(health, "reasons", ()))
    except Exception as exc:  # noqa: BLE001 - another thread mutating its dicts: say so, try next time
        reasons.append(f"agent health unavailable ({type(exc).__name__})")
    folder = getattr(agent, "folder", "")
    readable = bool(folder) and os.path.isdir(folder) and os.access(folder, os.R_OK | os.X_OK)
    if not readable:
        reasons.append(EXPORT_UNREADABLE)
    scorer = getattr(agent, "scorer", None)
    backend = str(getattr(scorer, "backend", "") or "")
    if not backend:
        reasons.append(NO_BACKEND)
    db = getattr(agent, "db", None)
    failing = getattr(db, "write_failing", None)
    state_ok = failing is None and not any("state database" in r for r in reasons)
    queue: int | None = None
    try:
        queue = len(agent.settler) + agent.events.qsize()
    except Exception:  # noqa: BLE001 - not every agent has both
        queue = None
    if extra is not None:
        reasons.extend(clean_text(str(r), 240) for r in extra())
    return AgentStatus(folder=folder_label(folder) if folder else "", backend=clean_text(backend, 40),
                       scorer=clean_text(str(getattr(scorer, "name", "") or ""), 40),
                       last_file_at=last_file_at() if last_file_at is not None else None, queue=queue,
                       reasons=tuple(dict.fromkeys(reasons)), export_readable=readable, state_ok=state_ok)


@dataclass
class StatusCache:
    """At most one provider call per ``ttl_s``; a provider that raises reads as degraded, never as a 500."""

    provider: Callable[[], AgentStatus] | None
    ttl_s: float = 1.0
    _value: AgentStatus | None = None
    _at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> AgentStatus | None:
        if self.provider is None:
            return None
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at >= self.ttl_s:
                try:
                    self._value = self.provider()
                except Exception as exc:  # noqa: BLE001 - the strip must still say something true
                    log.warning("console status provider failed (%s)", type(exc).__name__)
                    self._value = AgentStatus(reasons=(f"agent status unavailable ({type(exc).__name__})",))
                self._at = now
            return self._value
