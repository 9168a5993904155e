"""Writing the proposal as a thresholds file for review (the format and its loader: agent/config_thresholds.py).

Hand-written YAML so the figures a reviewer needs sit as comments beside each threshold; every value is
written as JSON (a subset of YAML), so quoting can never go wrong. The file is unsigned: the agent refuses it
until a reviewer fills in ``reviewed_by`` and ``reviewed_on``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from mediqa.agent.calibration.groups import Calibration, GroupResult
from mediqa.agent.calibration.sources import LABELS
from mediqa.agent.calibration.stats import Rate
from mediqa.agent.config_thresholds import FORMAT_VERSION, KIND


@dataclass(frozen=True)
class Provenance:
    created: str  # ISO 8601, UTC
    created_by: str  # the user who ran mediqa calibrate
    data: tuple[str, ...]  # what was read, in words
    model: str  # "name sha256-prefix"
    agent_version: str


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _interval(rate: Rate) -> list[float]:
    return [round(v, 4) for v in rate.interval] if rate.interval else []


def _pct(rate: Rate) -> str:
    if not rate.n or rate.interval is None:
        return "n/a (none)"
    low, high = rate.interval
    return f"{rate.k}/{rate.n} = {rate.k / rate.n:.1%} [95% {low:.1%}-{high:.1%}]"


def summary(group: GroupResult) -> str:
    """One line a reviewer reads: the threshold, its interval, the counts and the three rates."""
    p = group.proposal
    if p is None:
        return f"{group.key}: no proposal ({group.reason})"
    ci = f" [bootstrap 95% {p.interval[0]:.2f}-{p.interval[1]:.2f}]" if p.interval else ""
    ev = p.evaluation
    return (f"{group.key}: retake below {p.threshold:.2f}{ci}; n={len(group.rows)} series ({group.n_good} good, "
            f"{group.n_bad} bad); false alerts {_pct(ev.false_alerts)}; misses {_pct(ev.misses)}; "
            f"alerts {_pct(ev.alerts)} (now {_pct(group.now.alerts)})")


def _entry(group: GroupResult, indent: str) -> list[str]:
    p = group.proposal
    assert p is not None  # only groups with a proposal are written
    ev = p.evaluation
    fields: Sequence[tuple[str, object]] = (
        ("retake_below", p.threshold), ("proposed", p.threshold), ("n_series", len(group.rows)),
        ("n_good", group.n_good), ("n_bad", group.n_bad),
        ("threshold_ci95", [round(v, 3) for v in p.interval] if p.interval else []),
        ("false_alert_rate", _round(ev.false_alerts.estimate)), ("false_alert_ci95", _interval(ev.false_alerts)),
        ("miss_rate", _round(ev.misses.estimate)), ("miss_ci95", _interval(ev.misses)),
        ("alert_rate", _round(ev.alerts.estimate)), ("alert_ci95", _interval(ev.alerts)),
        ("note", f"alerts today {_pct(group.now.alerts)}; false alerts today {_pct(group.now.false_alerts)}"),
    )
    lines = [f"{indent}# {summary(group)}", f"{indent}{_json(group.key)}:"]
    lines += [f"{indent}  {name}: {_json(value)}" for name, value in fields]
    return lines


def render_reviewed(calibration: Calibration, provenance: Provenance) -> str:
    """The thresholds file text; groups without a proposal are listed in the header only."""
    s = calibration.settings
    name, _, sha = provenance.model.partition(" ")
    written = [g for g in (*calibration.modalities, *calibration.protocols) if g.proposal is not None]
    left = [g for g in calibration.protocols if g.proposal is None]
    header = [
        "# MedIQA Edge: retake thresholds proposed by `mediqa calibrate` from this site's feedback.",
        "# NOT APPLIED until reviewed. Read every threshold and its figures; delete or edit what you do not accept",
        "# (the figures were computed for the proposed value); then fill in reviewed_by and reviewed_on and name",
        "# this file in the agent config: thresholds.reviewed_file. The agent refuses the file while they are empty.",
        f"# Written {provenance.created} by {provenance.created_by} (mediqa {provenance.agent_version}).",
        *(f"# Data: {d}" for d in provenance.data),
        f"# Scores of model {provenance.model or '(unknown)'}; thresholds apply to that model's scores only.",
        "# Labels: rescanned, should_have_alerted = bad (should alert); false_alert, accepted = good (should not);",
        "# seen = unlabelled. Target: at most "
        f"{s.target:.1%} of good series alert. Intervals: Clopper-Pearson exact 95% for rates,",
        f"# bootstrap ({s.bootstrap} resamples of the good series, seed {s.seed}) 95% percentile for thresholds.",
        "# Order in the agent: protocol entry, then a config rule, then modality entry, then the config's thresholds;",
        "# the worst-slice limit (worst_slice_below) stays as configured.",
        *(f"# No proposal: {g.key}: {g.reason}" for g in left),
        "",
    ]
    body = [f"kind: {KIND}", f"version: {FORMAT_VERSION}", 'reviewed_by: ""', 'reviewed_on: ""',
            f"created: {_json(provenance.created)}", f"created_by: {_json(provenance.created_by)}",
            f"data: {_json(list(provenance.data))}", f"model_name: {_json(name)}", f"model_sha256: {_json(sha)}",
            f"target_false_alert_rate: {_json(s.target)}",
            f"labels: {_json({k: v or 'unlabelled' for k, v in LABELS.items()})}"]
    for level, section in (("modality", "modality"), ("protocol", "protocols")):
        groups = [g for g in written if g.level == level]
        body.append(f"{section}:" + ("" if groups else " {}"))
        for group in groups:
            body += _entry(group, "  ")
    return "\n".join(header + body) + "\n"
