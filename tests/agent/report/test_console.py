"""The console line: printed on a terminal; under journald logged once, a RETAKE at warning priority."""

from __future__ import annotations

import dataclasses
import io
import logging

from mediqa.agent.pipeline import unscored_result
from mediqa.agent.report.console import ConsoleReporter


def _result(decision: str):
    result = unscored_result([], ["noise like 4% of the reference dose"], series_uid="1.2.3", series_key="s-abc",
                             modality="CT")
    return dataclasses.replace(result, decision=decision)


def test_terminal_prints_one_line_and_logs_the_retake(caplog):
    out = io.StringIO()
    caplog.set_level(logging.INFO)
    ConsoleReporter("never", out, journal=False)(_result("retake"), 7)
    assert out.getvalue().count("\n") == 1 and "RETAKE" in out.getvalue()
    assert any(r.levelno == logging.WARNING and "RETAKE" in r.getMessage() for r in caplog.records)


def test_journal_logs_instead_of_printing_with_the_priority_journald_filters_on(caplog):
    out = io.StringIO()
    caplog.set_level(logging.INFO)
    reporter = ConsoleReporter("always", out, journal=True)
    reporter(_result("retake"), 7)
    reporter(_result("unscored"), 8)
    reporter(_result("ok"), 9)
    assert out.getvalue() == ""  # nothing printed: stdout is the journal, the log line is the record
    levels = [(r.levelno, r.journal_fields["MEDIQA_DECISION"]) for r in caplog.records if hasattr(r, "journal_fields")]
    assert levels == [(logging.WARNING, "retake"), (logging.WARNING, "unscored"), (logging.INFO, "ok")]
    assert all("\x1b" not in r.getMessage() for r in caplog.records)  # no ANSI colour under the service
