"""The live line per series that ``mediqa watch`` prints, and the retake highlight.

No patient names or IDs: the line shows series number, description, counts, score and decision.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from mediqa.agent.scoring.base import SeriesResult

log = logging.getLogger("mediqa.alert")

_RED_BOLD, _GREEN, _DIM, _RESET = "\033[1;37;41m", "\033[32m", "\033[2m", "\033[0m"


def use_color(setting: str, stream: TextIO) -> bool:
    if setting == "always":
        return True
    if setting == "never" or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def format_line(result: SeriesResult, color: bool = False) -> str:
    number = f"#{result.series_number}" if result.series_number is not None else "#?"
    desc = (result.series_description or "(no description)")[:32]
    decision = {"retake": "RETAKE", "unscored": "n/a"}.get(result.decision, "ok")
    why = f"  {'; '.join(result.reasons[:2])}" if result.reasons else ""
    text = (f"{number:>5} {desc:<32} {result.modality:<3} {result.n_slices:>4} sl  "
            f"score {result.score:4.2f}  {decision:<6}{why}  [{result.processing_ms:.0f} ms, {result.scorer}]")
    if not color:
        return text
    if result.decision == "retake":
        return f"{_RED_BOLD} RETAKE {_RESET} {text}"
    return f"{_GREEN}{text}{_RESET}"


class ConsoleReporter:
    """Prints one line per result; a retake is also a WARNING log line (for journald / service logs)."""

    def __init__(self, color_setting: str = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.color = use_color(color_setting, self.stream)

    def __call__(self, result: SeriesResult, result_id: int) -> None:
        print(format_line(result, self.color), file=self.stream, flush=True)
        if result.decision == "retake":
            log.warning("RETAKE suggested: series %s (%s, #%s) score %.2f: %s [result %d]", result.series_key,
                        result.modality, result.series_number, result.score, "; ".join(result.reasons), result_id)

    def remind(self, live_retakes: Sequence[Mapping[str, Any]]) -> int:
        """At start: the retake alerts nobody acknowledged yet (``mediqa alerts --ack ID`` clears one)."""
        open_alerts = [a for a in live_retakes if not a.get("acknowledged")]
        for a in open_alerts:
            text = (f"unacknowledged RETAKE [{a['result_id']}]: #{a.get('series_number')} "
                    f"{a.get('series_description', '')[:32]} {a.get('modality')} score {a.get('score', 0):.2f}: "
                    f"{'; '.join(a.get('reasons', [])[:2])}")
            print(f"{_RED_BOLD} RETAKE {_RESET} {text}" if self.color else text, file=self.stream, flush=True)
        return len(open_alerts)
