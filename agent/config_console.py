"""The ``console:`` section of the agent's configuration: the local web console, /healthz and /metrics.

Kept in the config layer (stdlib only) so ``agent/config.py`` can hold it and the console code in
``agent/report/web/`` reads the same class; validated by ``agent.report.web.check_console`` at start.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:8765"


@dataclass(frozen=True)
class ConsoleConfig:
    listen: str = DEFAULT_LISTEN  # host:port, [v6]:port, or "off"
    token: str = ""  # required on a non-loopback address; empty: generated at first start (state dir, 0600)
    show_patient: bool = False  # PatientName on the page (only if the service adds it to results); never logged
    sheets_max_age_h: float = 72.0
    sheets_max_mb: float = 500.0
    site: str = ""  # constant labels of every metric
    station: str = ""
