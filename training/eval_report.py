"""The evaluation's outputs: one markdown comparison table, the full metrics as JSON, scatter PNGs."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mediqa.training.eval import Scored
    from mediqa.training.trainset import BuiltDataSet

logger = logging.getLogger(__name__)


def _f(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def markdown_table(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """Quality score rows (one per scorer), then per modality / per degradation SRCC, then the heads."""
    lines = [f"# Evaluation: {meta['data_set']} ({meta['split']} split, {meta['samples']} slices)", "",
             f"Labels: {meta['quality_label']}. Retake threshold: score < {meta['retake_below']}.", "",
             f"Slice score: mean over the slice's crops (as the agent). Series score (retake ROC-AUC, false "
             f"alerts): {meta.get('series_aggregation', 'mean of slice scores')}.", "",
             "| scorer | SRCC | PLCC | KROCC | retake ROC-AUC | false alerts (undegraded) | coverage |",
             "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        a = r["all"]
        lines.append(f"| {label} | {_f(a['srcc'])} | {_f(a['plcc'])} | {_f(a['krocc'])} | {_f(r['retake_auc'])} "
                     f"| {_f(r['false_alert_rate'])} (n={r['n_clean_series']}) | {_f(r['coverage'])} |")
    for key in ("modality", "degradation"):
        names = sorted({n for r in results.values() for n in r[key]})
        lines += ["", f"Quality SRCC per {key}:", "",
                  "| scorer | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for label, r in results.items():
            lines.append(f"| {label} | " + " | ".join(_f(r[key].get(n, {}).get("srcc")) for n in names) + " |")
    for label, r in results.items():
        if "heads" not in r:
            continue
        lines += ["", f"Physical heads of {label} (SRCC / PLCC / KROCC against the transformed label):", "",
                  "| head | n | SRCC | PLCC | KROCC |", "|---|---|---|---|---|"]
        for name, h in r["heads"].items():
            a = h["all"]
            lines.append(f"| {name} | {int(a['n'])} | {_f(a['srcc'])} | {_f(a['plcc'])} | {_f(a['krocc'])} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    (out / "metrics.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float))
    table = markdown_table(meta, results)
    (out / "table.md").write_text(table)
    logger.info("\n%s", table)


def scatter_plots(out: Path, rows: Sequence[Scored], truth: np.ndarray, modality: Sequence[str], ds: BuiltDataSet,
                  idx: Sequence[int]) -> None:
    """Prediction vs label for each scorer (coloured by modality) and each physical head of the last row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"CT": "tab:blue", "MR": "tab:orange"}
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        for mod in sorted(set(modality)):
            m = np.array([x == mod for x in modality])
            ax.scatter(truth[m], row.quality[m], s=4, alpha=0.4, c=colours.get(mod, "tab:gray"), label=mod)
        ax.set_xlabel("label quality")
        ax.set_ylabel("predicted")
        ax.set_title(row.label, fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scatter_quality.png", dpi=90)
    plt.close(fig)
    last = rows[-1]
    if last.physics is None or last.card is None or not last.card.heads:
        return
    targets = np.stack([ds.targets(i) for i in idx])
    heads = list(last.card.heads)
    fig, axes = plt.subplots(1, len(heads), figsize=(4 * len(heads), 4), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], heads, strict=True)):
        ok = np.isfinite(targets[:, j])
        ax.scatter(targets[ok, j], last.physics[ok, j], s=4, alpha=0.4)
        ax.set_xlabel(f"label ({last.card.head_info.get(name, {}).get('transform', '')})")
        ax.set_ylabel("predicted")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "scatter_heads.png", dpi=90)
    plt.close(fig)
