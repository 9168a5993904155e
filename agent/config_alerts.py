"""The ``alerts:`` section of the agent's configuration: how long an alert is news.

``max_age_h`` bounds two things, both about alerts that come too late to act on (the patient has left):

- at the agent's first start on a folder that already holds series, a series whose newest file was
  written more than ``max_age_h`` ago, and before the agent's first result, is scored *as history*: its
  result is stored (history, CSV, results.jsonl) but raises nothing (no card, notification, SR, WARNING);
- a result older than ``max_age_h`` leaves the live view (the console's live page, ``mediqa alerts`` and
  the reminder at start); it stays in history.

Kept in the config layer (stdlib only) so ``agent/config.py`` can hold it and the report layer reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mediqa.errors import ConfigError

DEFAULT_MAX_AGE_H = 6.0  # longer than the longest exam slot; shorter than a shift, so the next one starts clean


@dataclass(frozen=True)
class AlertsConfig:
    max_age_h: float = DEFAULT_MAX_AGE_H  # 0 turns both limits off

    @property
    def max_age_s(self) -> float | None:
        """The limit in seconds, or None when it is off."""
        return self.max_age_h * 3600.0 if self.max_age_h > 0 else None

    def live_since(self, now: float) -> float | None:
        """The oldest creation time still in the live view at ``now`` (None: every result is)."""
        limit = self.max_age_s
        return None if limit is None else now - limit

    def history_age(self, newest_file_at: float, first_start: float, now: float) -> float | None:
        """The age of a series to be scored as history, else None (it is news).

        History: its newest file was written more than ``max_age_h`` before ``now`` *and* before
        ``first_start`` (the agent's first result on this state: the files were there before the agent
        ever ran). File times, not SeriesTime: the header records hold no series time, and a file's
        mtime is when the scanner (or the DICOM node) wrote it, on this machine's clock.
        """
        limit = self.max_age_s
        age = now - newest_file_at
        if limit is None or age <= limit or newest_file_at >= first_start:
            return None
        return age


def check_alerts(cfg: AlertsConfig) -> None:
    """Validate at load: a number of hours, not negative (0: off)."""
    value = cfg.max_age_h  # a number already (the loader refuses text and booleans)
    if not math.isfinite(value):
        raise ConfigError(f"alerts.max_age_h must be a number of hours, got {value!r}",
                          f"e.g. {DEFAULT_MAX_AGE_H:g}; 0 turns the limit off")
    if value < 0:
        raise ConfigError(f"alerts.max_age_h must not be negative, got {value:g}",
                          f"e.g. {DEFAULT_MAX_AGE_H:g}; 0 turns the limit off")
