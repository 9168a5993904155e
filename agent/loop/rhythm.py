"""A series' arrival rhythm, and the opt-in adaptive end of its quiet period (``completion.adaptive``).

DICOM has no end-of-series marker: a series without an expected count is complete after a quiet period
(``completion.quiet_period_s``), chosen long enough for the slowest console. The adaptive rule ends the
wait earlier when the series' own rhythm has clearly stopped: after a silence of ``k`` times the median
gap between its files (``completion.adaptive_k``), and longer than the longest pause the series has had
so far (times ``PAUSE_MARGIN``: a console that paused between two stacks may pause again), never shorter
than ``completion.adaptive_min_s`` and never longer than the quiet period. Fewer than ``MIN_FILES`` files
are no rhythm: the quiet period applies.

The trade-off: a series may be scored before its last file when the console pauses longer than it ever
did within that series (a slow network share, an operator's pause). Its late file re-opens the series and
the new result supersedes the first (``supersedes`` in results.jsonl): the alert may flip once.
``scripts/sim_adaptive_completion.py`` replays plausible export rhythms and counts both outcomes.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

MIN_FILES = 6  # files before a rhythm counts (5 gaps)
PAUSE_MARGIN = 1.5  # the silence must exceed the longest pause seen within the series by this factor
GAPS_KEPT = 512  # the latest gaps kept per series (bounded memory)


class Rhythm:
    """Arrival times of one series' files (the agent's clock), as gaps between them."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.files = 0
        self.gaps: deque[float] = deque(maxlen=GAPS_KEPT)

    def add(self, when: float) -> None:
        self.files += 1
        if self.last is not None:
            self.gaps.append(max(0.0, when - self.last))
        self.last = when if self.last is None else max(self.last, when)


def adaptive_wait(gaps: Sequence[float], quiet_s: float, k: float, min_s: float) -> float:
    """How long a series with these gaps between its files waits after its last one (at most ``quiet_s``)."""
    if len(gaps) < MIN_FILES - 1:
        return quiet_s
    rhythm = max(k * statistics.median(gaps), PAUSE_MARGIN * max(gaps), min_s)
    return min(quiet_s, rhythm)
