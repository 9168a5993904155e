"""The console's shared state: the read-only view, the guard, the providers the service passed, feedback.

One ``ConsoleApp`` serves every request thread. It never touches the agent's objects except through
the callables it was given (status, the writable ``StateDB`` for feedback), each guarded, so a failing
provider becomes a degraded strip, never a dead page; and nothing here ever runs on the agent's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mediqa.agent.report.feedback import Feedback, record_feedback
from mediqa.agent.report.metrics import AgentMetrics
from mediqa.agent.report.sheets import sheet_path
from mediqa.agent.report.web.cards import PatientHook, card, default_patient_name, detail
from mediqa.agent.report.web.config import ConsoleSettings, Listen
from mediqa.agent.report.web.events import Beacon
from mediqa.agent.report.web.reader import Row, StateReader, StateUnavailable
from mediqa.agent.report.web.security import Guard
from mediqa.agent.report.web.status import STATE_DEGRADED, AgentStatus, StatusCache
from mediqa.agent.state.db import STATE_FILE, StateDB

log = logging.getLogger(__name__)

DbProvider = Callable[[], StateDB]


class ConsoleApp:
    def __init__(self, cfg: ConsoleSettings, state_dir: Path, where: Listen, *,
                 status: Callable[[], AgentStatus] | None = None, metrics: AgentMetrics | None = None,
                 db: DbProvider | None = None, head_info: Mapping[str, Mapping[str, Any]] | None = None,
                 patient_name: PatientHook | None = None, heartbeat_s: float = 5.0, poll_s: float = 0.25,
                 live_max_age_s: float | None = None) -> None:
        self.cfg = cfg
        self.live_max_age_s = live_max_age_s  # ``alerts.max_age_h``: older results leave the live view
        self.state_dir = state_dir
        self.reader = StateReader(state_dir / STATE_FILE)
        self.guard = Guard.create(cfg, where, state_dir)
        self.beacon = Beacon()
        self.stopping = threading.Event()
        self.status = StatusCache(status)
        self.metrics = metrics or AgentMetrics(cfg.site, cfg.station)
        self.head_info = head_info or {}
        self.patient_name = (patient_name or default_patient_name) if cfg.show_patient else None
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self._db = db
        self._own_db: StateDB | None = None
        self._db_lock = threading.Lock()

    # --- cards ------------------------------------------------------------------------------------
    def sheet_file(self, result_id: int) -> Path:
        return sheet_path(self.state_dir, result_id)

    def cards(self, rows: list[Row]) -> list[dict[str, Any]]:
        """Cards of ``rows`` (their feedback read in one query)."""
        if not rows:
            return []
        try:
            answers = self.reader.feedback([int(r["result_id"]) for r in rows])
        except StateUnavailable:
            answers = {}
        return [self.card(r, answers.get(int(r["result_id"]), [])) for r in rows]

    def card(self, row: Row, answers: list[Feedback]) -> dict[str, Any]:
        rid = int(row["result_id"])
        out = card(row, answers, sheet=self.sheet_file(rid).is_file(), show_patient=self.cfg.show_patient,
                   patient_name=self.patient_name)
        out["history"] = row.get("origin") == "history"  # an old series at the first start: it raised nothing
        created = row.get("created")
        # When the card leaves an open live page (the page compares it with the server's clock).
        out["live_until"] = (float(created) + self.live_max_age_s
                             if self.live_max_age_s is not None and isinstance(created, (int, float)) else None)
        return out

    def live_since(self) -> float | None:
        """The oldest creation time still in the live view now (None: no limit)."""
        return None if self.live_max_age_s is None else time.time() - self.live_max_age_s

    def detail(self, row: Row) -> dict[str, Any]:
        base = self.cards([row])[0]
        return detail(row, base, self.head_info)

    # --- status -----------------------------------------------------------------------------------
    def agent_status(self) -> AgentStatus:
        """The provider's status, completed from the database (and degraded when it cannot be read)."""
        st = self.status.get()
        last_arrival, arriving = self.reader.activity()
        readable = True
        try:
            self.reader.columns()
        except StateUnavailable:
            readable = False
        if st is None:
            st = AgentStatus(in_process=False, last_file_at=last_arrival, queue=None)
        elif st.last_file_at is None and last_arrival is not None:
            st = replace(st, last_file_at=last_arrival)
        if not readable:
            st = replace(st, state_ok=False, reasons=(*st.reasons, STATE_DEGRADED))
        self.metrics.degraded(st.degraded)
        if st.queue is not None:
            self.metrics.queue(st.queue)
        return st

    def status_json(self) -> dict[str, Any]:
        now = time.time()
        out = self.agent_status().to_json(now)
        _, out["series_arriving"] = self.reader.activity()
        out["server_time"] = now
        out["heartbeat_s"] = self.heartbeat_s
        return out

    # --- feedback ---------------------------------------------------------------------------------
    def writer(self) -> StateDB:
        """The agent's ``StateDB`` (in-process), else one opened here for feedback (a separate console)."""
        if self._db is not None:
            return self._db()
        with self._db_lock:
            if self._own_db is None:
                self._own_db = StateDB.open(self.state_dir / STATE_FILE, timeout_s=5.0)
            return self._own_db

    def record(self, result_id: int, kind: str, note: str, initials: str) -> Feedback:
        fb = record_feedback(self.writer(), result_id, kind, note=note, initials=initials)
        self.beacon.bump()
        return fb

    def close(self) -> None:
        self.stopping.set()
        self.beacon.bump()
        self.reader.close()
        with self._db_lock:
            if self._own_db is not None:
                self._own_db.close()
                self._own_db = None
