"""The real-series evaluation's tables (markdown) and rows (JSON), from ``eval_real``'s rows.

False alerts are counted on clean series that training never saw (split val, test or none): a RETAKE on
one of them is a false alert. A control counts as passed unless it was scored ``ok``. A severe level
counts as caught when it is a RETAKE (an ``unscored`` severe series is listed, not counted as caught).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

HELD_OUT = ("val", "test", "none")


@dataclass(frozen=True)
class Row:
    series: str
    origin: str
    subject: str
    modality: str
    anatomy: str
    vendor: str
    split: str
    kind: str  # clean | control | severe
    family: str
    level: str
    scorer: str
    score: float
    decision: str
    reasons: tuple[str, ...]

    def cell(self) -> str:
        score = "n/a" if not math.isfinite(self.score) else f"{self.score:.2f}"
        return f"{score} {self.decision.upper() if self.decision == 'retake' else self.decision}"


def _scorers(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r.scorer for r in rows))


def _pivot(rows: Sequence[Row], kind: str) -> dict[tuple[str, str, str], dict[str, Row]]:
    table: dict[tuple[str, str, str], dict[str, Row]] = defaultdict(dict)
    for r in rows:
        if r.kind == kind:
            table[(r.series, r.family, r.level)][r.scorer] = r
    return table


def clean_table(rows: Sequence[Row]) -> list[str]:
    scorers = _scorers(rows)
    out = ["| series | origin | subject | modality | anatomy (prompt) | vendor | in data set | "
           + " | ".join(scorers) + " |", "|" + "---|" * (7 + len(scorers))]
    for (name, _, _), by in _pivot(rows, "clean").items():
        first = next(iter(by.values()))
        out.append(f"| {name} | {first.origin} | {first.subject} | {first.modality} | {first.anatomy} | "
                   f"{first.vendor} | {first.split} | " + " | ".join(by[s].cell() if s in by else "" for s in scorers)
                   + " |")
    return out


def false_alert_table(rows: Sequence[Row]) -> list[str]:
    """Per modality and anatomy: RETAKEs among clean held-out real series, per scorer."""
    scorers = _scorers(rows)
    counts: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in rows:
        if r.kind == "clean" and r.split in HELD_OUT and r.decision in ("ok", "retake"):
            for key in ((r.modality, r.anatomy), (r.modality, "all"), ("all", "all")):
                counts[key][r.scorer][0] += r.decision == "retake"
                counts[key][r.scorer][1] += 1
    out = ["| modality | anatomy | " + " | ".join(scorers) + " |", "|" + "---|" * (2 + len(scorers))]
    for (modality, anatomy) in sorted(counts, key=lambda k: (k[0] == "all", k[0], k[1] == "all", k[1])):
        by = counts[(modality, anatomy)]
        out.append(f"| {modality} | {anatomy} | " + " | ".join(
            f"{by[s][0]} of {by[s][1]}" if s in by else "" for s in scorers) + " |")
    return out


def control_table(rows: Sequence[Row]) -> list[str]:
    scorers = _scorers(rows)
    out = ["| control | " + " | ".join(scorers) + " |", "|" + "---|" * (1 + len(scorers))]
    for (name, _, _), by in _pivot(rows, "control").items():
        out.append(f"| {name} | " + " | ".join(by[s].cell() if s in by else "" for s in scorers) + " |")
    return out


def severe_table(rows: Sequence[Row]) -> list[str]:
    scorers = _scorers(rows)
    out = ["| source | family | level | in data set | " + " | ".join(scorers) + " |",
           "|" + "---|" * (4 + len(scorers))]
    for (name, family, level), by in _pivot(rows, "severe").items():
        first = next(iter(by.values()))
        out.append(f"| {name} | {family} | {level} | {first.split} | "
                   + " | ".join(by[s].cell() if s in by else "" for s in scorers) + " |")
    return out


def summary(rows: Sequence[Row]) -> list[str]:
    scorers = _scorers(rows)
    lines = ["| scorer | false alerts, clean held-out | false alerts, clean (all) | controls scored ok | "
             "severe levels caught (RETAKE) |", "|---|---|---|---|---|"]
    for s in scorers:
        mine = [r for r in rows if r.scorer == s]
        held = [r for r in mine if r.kind == "clean" and r.split in HELD_OUT and r.decision in ("ok", "retake")]
        every = [r for r in mine if r.kind == "clean" and r.decision in ("ok", "retake")]
        ctrl = [r for r in mine if r.kind == "control"]
        severe = [r for r in mine if r.kind == "severe"]
        lines.append(f"| {s} | {sum(r.decision == 'retake' for r in held)} of {len(held)} | "
                     f"{sum(r.decision == 'retake' for r in every)} of {len(every)} | "
                     f"{sum(r.decision == 'ok' for r in ctrl)} of {len(ctrl)} | "
                     f"{sum(r.decision == 'retake' for r in severe)} of {len(severe)} |")
    return lines


def write_tables(rows: Sequence[Row], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "## Real series (end to end through the agent)", "",
        "Clean series count as held out when training never saw them (data set split val, test or none); "
        "a RETAKE on one of them is a false alert. Skipped and unscored series are listed, not counted.", "",
        *summary(rows), "",
        "False alerts on clean held-out real series, per modality and anatomy (the agent's prompt):", "",
        *false_alert_table(rows), "", "Every clean real series:", "", *clean_table(rows), "",
        "Controls (no patient in the image; none may be scored ok):", "", *control_table(rows), "",
        "Most severe simulated level of each family on every real source (applied to the slices the agent "
        "selected):", "", *severe_table(rows), "",
    ]
    path = out / "real-series.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    (out / "real-series.json").write_text(json.dumps([asdict(r) for r in rows], indent=1, allow_nan=True) + "\n",
                                          encoding="utf-8")
    return path
