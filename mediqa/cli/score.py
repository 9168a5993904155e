"""``mediqa score PATH``: one-shot scoring of a series folder, a file, or a whole export tree."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.cli.common import add_config_options, config_from_args

if TYPE_CHECKING:
    from mediqa.agent.config import AgentConfig
    from mediqa.agent.dicom.volume import SeriesLayout
    from mediqa.agent.scoring.base import SeriesResult

HELP = """\
Score every complete series found under PATH (a series folder, one file, or a whole export tree)
and print a table; nothing is written next to the images.

examples:
  mediqa score /data/export/study1                  table of series, scores and decisions
  mediqa score /data/export --json > results.jsonl  one JSON object per series (for machines)
  mediqa score series/ --explain                    chosen slices, weights, prompt, per-slice scores
  mediqa score series/ --thumbnails sheets/         PNG contact sheet of the scored slices per series
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score series under a path once and print the results",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path, help="series folder, DICOM file, or export tree")
    p.add_argument("--json", action="store_true", help="print one JSON object per series instead of a table")
    p.add_argument("--explain", action="store_true", help="show chosen slices, prompt and per-slice scores")
    p.add_argument("--thumbnails", type=Path, metavar="DIR", help="write a PNG contact sheet per series here")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.agent.dicom.index import scan_tree
    from mediqa.agent.pipeline import analyse_series
    from mediqa.agent.report.console import format_line
    from mediqa.agent.scoring.base import provenance_fields
    from mediqa.agent.scoring.factory import make_scorer
    from mediqa.cli.common import check_readable
    from mediqa.errors import MediqaError

    try:
        exists = args.path.exists()
    except PermissionError:
        exists = True  # a parent folder denies the walk: said by check_readable
    if not exists:
        raise MediqaError(f"{args.path} does not exist")
    config = config_from_args(args)
    check_readable(args.path, "export folder" if args.path.is_dir() else "file", "score")
    _check_engine_cache(config)
    skipped: dict[str, str] = {}
    series = scan_tree(args.path, skip_derived=config.ingest.skip_derived,
                       skip_localizers=config.ingest.skip_localizers, skipped=skipped)
    if not series:
        reasons = sorted(set(skipped.values()))
        raise MediqaError(f"no scorable CT/MR series under {args.path}",
                          f"files skipped: {', '.join(reasons)}" if reasons else "is this a DICOM folder?")
    scorer = make_scorer(config)
    failures = 0
    try:
        for records in series.values():
            try:
                analysis = analyse_series(records, scorer, config)
                layout, result = analysis.layout, replace(analysis.result, **provenance_fields(scorer))
            except MediqaError as exc:
                failures += 1
                print(f"series {records[0].series_key}: cannot score: {exc}", file=sys.stderr)
                continue
            if args.json:
                print(json.dumps(result.to_json(), sort_keys=True))
            else:
                print(format_line(result))
            if args.explain:
                _explain(result, layout)
            if args.thumbnails:
                from mediqa.agent.report.thumbnails import contact_sheet

                args.thumbnails.mkdir(parents=True, exist_ok=True)
                out = contact_sheet(layout, result, args.thumbnails / f"{result.series_key}.png")
                print(f"      contact sheet: {out}", file=sys.stderr if args.json else sys.stdout)
    finally:
        scorer.close()
    if skipped and not args.json:
        counts: dict[str, int] = {}
        for reason in skipped.values():
            counts[reason] = counts.get(reason, 0) + 1
        print("skipped files: " + ", ".join(f"{n} {r}" for r, n in sorted(counts.items())))
    return 1 if failures and failures == len(series) else 0


def _check_engine_cache(config: AgentConfig) -> None:
    """The learned scorer looks up TensorRT engines in the state dir: one the user cannot read is one line
    with the remedy (never a silent fall back to the CPU, never a traceback)."""
    import os

    from mediqa.cli.common import accessible, current_user, permission_remedy
    from mediqa.errors import ConfigError

    if config.scoring.scorer != "learned" or "tensorrt" not in config.scoring.backends:
        return
    cache = config.engine_cache_path
    try:
        present = cache.exists()
    except PermissionError:
        present, readable = True, False
    else:
        readable = not present or accessible(cache, os.R_OK | os.X_OK)
    if present and not readable:
        raise ConfigError(f"engine cache {cache} is not readable by user {current_user()}",
                          permission_remedy("score"))


def _explain(result: SeriesResult, layout: SeriesLayout) -> None:
    print(f"      prompt: {dict(result.prompt)}")
    print(f"      selection ({result.selection.method}, {layout.n_slices} slices):")
    for i, w, s in zip(result.selection.indices, result.selection.weights, result.slice_scores, strict=True):
        where = f"slice {i + 1:>4}/{layout.n_slices}  at {layout.slices[i].position:8.1f} mm"
        print(f"        {where}  weight {w:.3f}  score {s:.2f}")
    if result.measures:
        print("      measures: " + ", ".join(f"{k}={v:.3g}" for k, v in result.measures.items()))
    for note in result.warnings:
        print(f"      note: {note}")
