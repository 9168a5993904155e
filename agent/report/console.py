"""The live line per series that ``mediqa watch`` prints, and the retake highlight.

No patient names or IDs: the line shows series number, description, counts, score and decision.
Header text (the description, reasons built from it) passes ``clean_text`` first: a control character
in a SeriesDescription cannot move the cursor, erase a line or start a new one. An unscored series
shows ``n/a`` and why; a skipped one ``skipped`` and why; notices ("27 of 28 images could be read") are
on the line too; a result shown only after a restart says "(shown late)".
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from mediqa.agent.report.journal_log import log_result, stream_is_journal
from mediqa.agent.report.privacy import clean_text
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
    desc = clean_text(result.series_description or "(no description)", 32)
    decision = {"retake": "RETAKE", "unscored": "n/a", "skipped": "skipped"}.get(result.decision, "ok")
    notes = [*result.reasons[:2], *result.notices]
    why = f"  {clean_text('; '.join(notes), 240)}" if notes else ""
    late = "  (shown late)" if result.shown_late else ""
    text = (f"{number:>5} {desc:<32} {clean_text(result.modality, 3):<3} {result.n_slices:>4} sl  "
            f"score {score_text(result.score)}  {decision:<6}{why}  [{result.processing_ms:.0f} ms, "
            f"{clean_text(result.scorer, 40)}]{late}")
    if not color:
        return text
    if result.decision == "retake":
        return f"{_RED_BOLD} RETAKE {_RESET} {text}"
    if result.decision in ("unscored", "skipped"):
        return f"{_DIM}{text}{_RESET}"
    return f"{_GREEN}{text}{_RESET}"


def score_text(score: float | None) -> str:
    """A score for a line: two decimals, or ``n/a`` (unscored: NaN, or null in JSON)."""
    return f"{score:4.2f}" if score is not None and math.isfinite(score) else " n/a"


class ConsoleReporter:
    """Prints one line per result; a retake is also a WARNING log line (for journald / service logs).

    Under journald (stdout is the journal stream) the line is logged instead of printed, once, at the
    priority journald filters on (a RETAKE or an unscored series at warning) and with its fields, so
    ``journalctl -p warning`` shows every retake and nothing is duplicated.
    """

    def __init__(self, color_setting: str = "auto", stream: TextIO | None = None, journal: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.journal = stream_is_journal(self.stream) if journal is None else journal
        self.color = use_color(color_setting, self.stream) and not self.journal

    def __call__(self, result: SeriesResult, result_id: int) -> None:
        if self.journal:
            log_result(log, {**result.to_json(), "result_id": result_id}, format_line(result))
            return
        print(format_line(result, self.color), file=self.stream, flush=True)
        reasons = clean_text("; ".join([*result.reasons, *result.notices]), 240)
        if result.decision == "retake":
            log.warning("RETAKE suggested: series %s (%s, #%s) score %s: %s [result %d]", result.series_key,
                        clean_text(result.modality, 3), result.series_number, score_text(result.score).strip(),
                        reasons, result_id)
        elif result.decision == "unscored":
            log.warning("series %s (%s, #%s) could not be scored: %s [result %d]", result.series_key,
                        clean_text(result.modality, 3), result.series_number, reasons, result_id)

    def remind(self, live_retakes: Sequence[Mapping[str, Any]]) -> int:
        """At start: the retake alerts nobody acknowledged yet (``mediqa alerts --ack ID`` clears one)."""
        open_alerts = [a for a in live_retakes if not a.get("acknowledged")]
        for a in open_alerts:
            text = (f"unacknowledged RETAKE [{a['result_id']}]: #{a.get('series_number')} "
                    f"{clean_text(a.get('series_description') or '', 32)} {clean_text(a.get('modality') or '', 3)} "
                    f"score {score_text(a.get('score')).strip()}: "
                    f"{clean_text('; '.join(a.get('reasons', [])[:2]), 240)}")
            print(f"{_RED_BOLD} RETAKE {_RESET} {text}" if self.color else text, file=self.stream, flush=True)
        return len(open_alerts)
