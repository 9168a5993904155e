#!/usr/bin/env python3
"""Re-embed a model's card with its evaluation block, changing the ONNX metadata only (never the weights).

The deploy gate (``agent/scoring/models.py``) runs a model only when its card carries
``metrics.evaluation`` with ``quality`` metrics that reach the card's own ``floor``
(agent/models/MODEL_CARD.md, "The evaluation block"). This script reads the evaluation report that
``mediqa eval`` wrote (``edge-default-eval.md``), builds that block from the model's row (and the
classical baseline's), writes it into the card in the ONNX metadata with ``mediqa.model_card.embed_card``,
checks that the serialized graph (nodes and weights) is byte-identical before and after, and rewrites
the readable JSON copy beside the model.

    python scripts/embed_model_card.py                    # the shipped default model, floor srcc 0.5
    python scripts/embed_model_card.py --check            # exit 1 if the embedded card is not up to date
    python scripts/embed_model_card.py --model m.onnx --eval eval.md --row "my model" --json m.json --floor srcc=0.6
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "agent" / "models"
SHIPPED_ROW = "ours: MANIQA + prompts, crops (36 + 24 epochs, shipped)"
BASELINE_ROW = "classical (noise: CT GNL, MR SNR)"
MAIN_COLUMNS = {"SRCC": "srcc", "PLCC": "plcc", "KROCC": "krocc", "retake ROC-AUC": "retake_roc_auc",
                "false alerts (undegraded)": "false_alert_rate", "coverage": "coverage"}


def _tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every markdown table: (the paragraph line before it, header cells, rows of cells)."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1].replace("|", "").strip()) <= set("-: "):
            title = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            header = _cells(lines[i])
            rows: list[list[str]] = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append((title, header, rows))
        else:
            i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _value(cell: str) -> float | None:
    match = re.match(r"-?\d+(\.\d+)?", cell)
    return float(match.group()) if match else None  # "n/a" -> None


def _row(rows: list[list[str]], label: str, where: str) -> list[str]:
    for row in rows:
        if row[0] == label:
            return row
    raise SystemExit(f"no row {label!r} in {where} (rows: {', '.join(r[0] for r in rows)})")


def evaluation_from_report(report: Path, row: str, baseline: str | None, floor: dict[str, float],
                           model_arg: str) -> dict[str, Any]:
    """The card's ``metrics.evaluation`` block from a ``mediqa eval`` report (its markdown tables)."""
    text = report.read_text(encoding="utf-8")
    title = re.search(r"^# Evaluation: (?P<data>\S+) \((?P<split>\w+) split, (?P<n>\d+) slices\)", text, re.M)
    if title is None:
        raise SystemExit(f"{report}: no '# Evaluation: DATASET (SPLIT split, N slices)' title")
    dataset, _, version = title["data"].rpartition("-")
    tables = _tables(text)
    main = next((t for t in tables if t[1][:2] == ["scorer", "SRCC"]), None)
    if main is None:
        raise SystemExit(f"{report}: no main table (| scorer | SRCC | ...)")

    def metrics(label: str) -> dict[str, Any]:
        cells = _row(main[2], label, f"{report} main table")
        out: dict[str, Any] = {}
        for name, cell in zip(main[1][1:], cells[1:], strict=True):
            if name in MAIN_COLUMNS:
                out[MAIN_COLUMNS[name]] = _value(cell)
            if name.startswith("false alerts"):
                count = re.search(r"n=(\d+)", cell)
                out["undegraded_series"] = int(count.group(1)) if count else None
        return out

    label = re.search(r"^Labels: (.+?)\.(?: |$)", text, re.M)
    ev: dict[str, Any] = {
        "dataset": dataset or title["data"], "dataset_version": version if dataset else "", "split": title["split"],
        "n": int(title["n"]), "label": label.group(1) if label else "",
        "report": os.path.relpath(report, REPO) if report.is_relative_to(REPO) else str(report),
        "command": f"mediqa eval {model_arg} --data data-out/{title['data']} --split {title['split']}",
        "quality": metrics(row),
    }
    threshold = re.search(r"Retake threshold: score < (\d+(?:\.\d+)?)", text)
    if threshold:
        ev["retake_below"] = float(threshold.group(1))
    for title_text, header, rows in tables:
        if title_text.startswith("Quality SRCC per modality"):
            cells = _row(rows, row, title_text)
            ev["quality_srcc_by_modality"] = {h: _value(c) for h, c in zip(header[1:], cells[1:], strict=True)}
        elif title_text.startswith("Quality SRCC per degradation"):
            cells = _row(rows, row, title_text)
            ev["quality_srcc_by_degradation"] = {h: _value(c) for h, c in zip(header[1:], cells[1:], strict=True)}
        elif title_text.startswith(f"Physical heads of {row} ("):
            ev["heads"] = {r[0]: {"n": int(r[1]), **{h.lower(): _value(c) for h, c in zip(header[2:], r[2:],
                                                                                          strict=True)}}
                           for r in rows}
    if baseline:
        ev["baseline"] = {"name": baseline, **metrics(baseline)}
    ev["floor"] = dict(floor)
    return ev


def graph_sha256(proto: Any) -> str:
    return hashlib.sha256(proto.graph.SerializeToString()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    import onnx

    from mediqa.model_card import card_from_metadata, embed_card

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=MODELS / "edge-default.onnx")
    p.add_argument("--eval", type=Path, default=MODELS / "edge-default-eval.md", help="the mediqa eval report")
    p.add_argument("--row", default=SHIPPED_ROW, help="the model's row in the report")
    p.add_argument("--baseline", default=BASELINE_ROW, help="the baseline's row ('' for none)")
    p.add_argument("--floor", action="append", default=[], metavar="METRIC=MIN",
                   help="a minimum the evaluation must reach (default srcc=0.5); repeatable")
    p.add_argument("--json", type=Path, default=None, help="the readable copy (default: MODEL with .json)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if the card is not up to date")
    args = p.parse_args(argv)

    floor: dict[str, float] = {}
    for item in args.floor or ["srcc=0.5"]:
        metric, sep, minimum = item.partition("=")
        if not sep:
            raise SystemExit(f"--floor {item!r} is not METRIC=MIN")
        floor[metric.strip()] = float(minimum)
    model_arg = os.path.relpath(args.model, REPO) if args.model.resolve().is_relative_to(REPO) else str(args.model)
    evaluation = evaluation_from_report(args.eval, args.row, args.baseline or None, floor, model_arg)

    proto = onnx.load(str(args.model))
    before = graph_sha256(proto)
    card = card_from_metadata({prop.key: prop.value for prop in proto.metadata_props})
    if card is None:
        raise SystemExit(f"{args.model} has no model card to extend")
    new_card = dataclasses.replace(card, metrics={**card.metrics, "evaluation": evaluation})
    json_path = args.json or args.model.with_suffix(".json")
    if args.check:
        current = json_path.read_text(encoding="utf-8").strip() if json_path.is_file() else ""
        ok = card.to_json() == new_card.to_json() and current == new_card.to_json()
        print(f"{args.model.name}: card {'up to date' if ok else 'NOT up to date'} (graph sha256 {before})")
        return 0 if ok else 1

    embed_card(proto, new_card)
    if graph_sha256(proto) != before:
        raise SystemExit("the graph changed while embedding the card: nothing written")
    tmp = args.model.with_name(f".{args.model.name}.tmp")
    onnx.save(proto, str(tmp))
    check = onnx.load(str(tmp))
    embedded = card_from_metadata({prop.key: prop.value for prop in check.metadata_props})
    if graph_sha256(check) != before or embedded is None or embedded.to_json() != new_card.to_json():
        tmp.unlink()
        raise SystemExit("the written model does not read back as expected: nothing replaced")
    os.replace(tmp, args.model)
    json_path.write_text(new_card.to_json() + "\n", encoding="utf-8")
    digest = hashlib.sha256(args.model.read_bytes()).hexdigest()
    q = evaluation["quality"]
    print(f"{args.model}: evaluation embedded (SRCC {q['srcc']}, floor {floor}); graph sha256 {before} unchanged")
    print(f"file sha256 {digest}; readable copy {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
