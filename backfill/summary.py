"""The backfill's summary report: ``<out>/summary.md`` with alert rates per modality, protocol and station,
score distributions (PNG plots when matplotlib is installed), and the worst series with contact sheets.

Read back from the Parquet parts (this model and config only), so a resumed run summarises everything done.
Series appear by pseudonymous key and description, never by patient; thumbnails are named by series key.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mediqa.agent.dicom.records import InstanceRecord
from mediqa.backfill.store import ResultsDir

log = logging.getLogger(__name__)

WORST_SHOWN = 8


def write_summary(results: ResultsDir, sha: str, digest: str,
                  records_of: Callable[[str], Sequence[InstanceRecord] | None], *, throughput: str = "") -> Path:
    """Write summary.md (and plots/, sheets/) under the results' folder; returns the Markdown file."""
    rows = [r for r in results.table().to_pylist() if r["model_sha256"] == sha and r["config_digest"] == digest]
    out = results.out
    lines = ["# Backfill summary", "", f"{len(rows)} series scored with model `{sha[:12] or 'classical'}`, "
             f"config digest `{digest}`." + (f" {throughput}" if throughput else ""), ""]
    decisions: dict[str, int] = {}
    for r in rows:
        decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1
    lines += ["Decisions: " + ", ".join(f"{n} {d}" for d, n in sorted(decisions.items())), ""]
    for title, column in (("modality", "modality"), ("protocol", "protocol"), ("station", "station")):
        lines += _rate_table(rows, title, column)
    lines += _score_table(rows)
    plot = _plot_scores(rows, out / "plots" / "scores.png")
    if plot:
        lines += [f"![score distribution]({plot.relative_to(out)})", ""]
    lines += _worst(rows, records_of, out / "sheets", out)
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _group(row: Mapping[str, Any], column: str) -> str:
    if column == "protocol":
        return str(row["protocol_name"] or row["series_description"] or "(none)")
    return str(row[column] or "(none)")


def _rate_table(rows: Sequence[Mapping[str, Any]], title: str, column: str) -> list[str]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_group(r, column), []).append(r)
    out = [f"## Alert rate per {title}", "", f"| {title} | series | scored | retake | alert rate | median score |",
           "|---|---|---|---|---|---|"]
    for name, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        scored = [r for r in members if r["decision"] in ("ok", "retake")]
        retake = sum(r["decision"] == "retake" for r in scored)
        rate = f"{100.0 * retake / len(scored):.1f} %" if scored else "-"
        out.append(f"| {name.replace('|', '/')} | {len(members)} | {len(scored)} | {retake} | {rate} | "
                   f"{_fmt(_quantile([r['score'] for r in scored], 0.5))} |")
    return [*out, ""]


def _score_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["## Score distribution", "", "| modality | n | p5 | p25 | median | p75 | p95 |",
           "|---|---|---|---|---|---|---|"]
    by: dict[str, list[float]] = {}
    for r in rows:
        if r["score"] is not None:
            by.setdefault(r["modality"] or "(none)", []).append(float(r["score"]))
    for mod, scores in sorted(by.items()):
        q = " | ".join(_fmt(_quantile(scores, p)) for p in (0.05, 0.25, 0.5, 0.75, 0.95))
        out.append(f"| {mod} | {len(scores)} | {q} |")
    return [*out, ""]


def _quantile(values: Sequence[float | None], p: float) -> float:
    known = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    if not known:
        return math.nan
    pos = p * (len(known) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return known[lo] + (known[hi] - known[lo]) * (pos - lo)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _plot_scores(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """A histogram of series scores per modality; None when matplotlib is not installed (the tables remain)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    by: dict[str, list[float]] = {}
    for r in rows:
        if r["score"] is not None:
            by.setdefault(r["modality"] or "?", []).append(float(r["score"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for mod, scores in sorted(by.items()):
        ax.hist(scores, bins=[i / 8 for i in range(33)], alpha=0.6, label=f"{mod} ({len(scores)})")
    ax.set_xlabel("series score (0 bad .. 4 excellent)")
    ax.set_ylabel("series")
    if by:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _worst(rows: Sequence[Mapping[str, Any]], records_of: Callable[[str], Sequence[InstanceRecord] | None],
           sheets: Path, out: Path) -> list[str]:
    from mediqa.agent.dicom.volume import plan_series
    from mediqa.agent.report.thumbnails import contact_sheet
    from mediqa.agent.scoring.base import SeriesResult

    scored = sorted((r for r in rows if r["score"] is not None), key=lambda r: r["score"])[:WORST_SHOWN]
    lines = ["## Worst series", "", "| series | modality | description | station | score | decision | sheet |",
             "|---|---|---|---|---|---|---|"]
    for r in scored:
        sheet = "-"
        records = records_of(r["series_uid"])  # None: a series of an earlier run, gone from the tree
        if records:
            try:
                result = SeriesResult.from_json(json.loads(r["result_json"]))
                sheets.mkdir(parents=True, exist_ok=True)
                made = contact_sheet(plan_series(list(records)), result, sheets / f"{r['series_key']}.png")
                sheet = f"![{r['series_key']}]({made.relative_to(out)})"
            except Exception as exc:  # noqa: BLE001 - a sheet is an illustration: the row stays without it
                log.info("no contact sheet for %s: %s", r["series_key"], type(exc).__name__)
        desc = str(r["series_description"] or "").replace("|", "/")
        lines.append(f"| {r['series_key']} | {r['modality']} | {desc} | {r['station'] or '-'} | {r['score']:.2f} | "
                     f"{r['decision']} | {sheet} |")
    return [*lines, ""]
