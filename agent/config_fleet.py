"""The ``fleet:`` section of the agent's configuration: what a fleet's Prometheus compares this station with.

The agent publishes these on ``/metrics`` (``agent/report/metrics.py``), so the shipped alerting rules
(``packaging/prometheus/mediqa-rules.yml``) need no per-station copy: each station carries its own band,
its own "deaf" gap and whether it is inside its working hours now (in the console's local time zone, which
Prometheus, on UTC, does not know). The labels ``site`` and ``station`` stay in ``console:``.

- ``alert_rate_band``: the fraction of scored series raising a retake alert that is normal for this
  station, [low, high]; calibrate it from a backfill of the station's archive (``mediqa backfill``'s summary
  has the alert rate per station) or from ``mediqa calibrate``.
- ``deaf_after_s``: inside working hours, no file event for this long means the agent no longer sees the
  export (an unmounted share, a console exporting elsewhere).
- ``working_hours``: [start, end) local hours; ``working_days``: ISO weekdays (1 Monday .. 7 Sunday).

Kept in the config layer (stdlib only) so ``agent/config.py`` can hold it and the report layer reads it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from mediqa.errors import ConfigError


@dataclass(frozen=True)
class FleetConfig:
    alert_rate_band: tuple[float, float] = (0.0, 0.25)
    deaf_after_s: float = 3600.0
    working_hours: tuple[int, int] = (7, 19)
    working_days: tuple[int, ...] = (1, 2, 3, 4, 5)

    def working_now(self, now: float | None = None) -> bool:
        """Inside working hours at ``now`` (epoch seconds; default: now), in local time."""
        local = time.localtime(time.time() if now is None else now)
        start, end = self.working_hours
        return local.tm_wday + 1 in self.working_days and start <= local.tm_hour < end


def check_fleet(fleet: FleetConfig) -> None:
    if len(fleet.alert_rate_band) != 2:
        raise ConfigError("fleet.alert_rate_band must be [low, high]", "fractions of scored series, e.g. [0.0, 0.25]")
    low, high = fleet.alert_rate_band
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(f"fleet.alert_rate_band {list(fleet.alert_rate_band)} must satisfy 0 <= low <= high <= 1",
                          "fractions of scored series, e.g. [0.0, 0.25]")
    if not math.isfinite(fleet.deaf_after_s) or fleet.deaf_after_s <= 0:
        raise ConfigError(f"fleet.deaf_after_s must be positive, got {fleet.deaf_after_s}")
    if len(fleet.working_hours) != 2 or not 0 <= fleet.working_hours[0] < fleet.working_hours[1] <= 24:
        raise ConfigError(f"fleet.working_hours {list(fleet.working_hours)} must be [start, end) with "
                          "0 <= start < end <= 24", "local hours, e.g. [7, 19]")
    bad = [d for d in fleet.working_days if not 1 <= d <= 7]
    if bad:
        raise ConfigError(f"fleet.working_days: {bad} are not ISO weekdays", "1 (Monday) .. 7 (Sunday)")
