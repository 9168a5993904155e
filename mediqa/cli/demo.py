"""``mediqa demo``: the agent end to end on sample series, in a temporary export folder.

Uses real series from ../shared/data/dicom when present (plus a copy of one with simulated extra
noise, so a retake shows up), otherwise generated phantom series. Nothing outside a temp folder
is written.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path

from mediqa.cli.common import add_config_options, config_from_args

log = logging.getLogger("mediqa.demo")

HELP = """\
Replay sample series into a temporary export folder while the agent watches it, print one line
per series as results come in, then stop. Shows what a technologist would see at the console.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="watch sample series being exported and scored (temp folders only)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=Path, help="folder of series to replay (default: shared data or phantoms)")
    p.add_argument("--rate", type=float, default=400.0, help="replay rate in files/s (default 400)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders and print where they are")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediqa.agent.report.console import ConsoleReporter
    from mediqa.agent.samples import prepare_samples
    from mediqa.agent.scoring.base import SeriesResult
    from mediqa.agent.scoring.factory import make_scorer
    from mediqa.agent.service import Agent
    from mediqa.cli.replay import replay

    root = Path(tempfile.mkdtemp(prefix="mediqa-demo-"))
    export, state, staging = root / "export", root / "state", root / "samples"
    export.mkdir()
    sources = [args.samples] if args.samples else prepare_samples(staging)
    config = config_from_args(args, state_dir=str(state), **{
        "completion.quiet_period_s": {"default": 2.0}, "watch.file_stable_s": 0.2,
        "watch.reconcile_interval_s": 5.0})
    scorer = make_scorer(config)
    print(f"MedIQA Edge demo: {len(sources)} series -> {export} (scorer: {scorer.name} on {scorer.backend})")
    results: list[SeriesResult] = []
    reporter = ConsoleReporter(config.report.color)

    def on_result(result: SeriesResult, result_id: int) -> None:
        results.append(result)
        reporter(result, result_id)

    agent = Agent(config, scorer, export, on_result=on_result)
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), kwargs={"watch": True}, daemon=True)
    loop.start()
    try:
        for i, src in enumerate(sources):
            replay(src, export / f"series{i + 1:02d}", rate=args.rate)
        deadline = time.monotonic() + 120
        while len(results) < len(sources) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        loop.join(timeout=10)
    retakes = sum(1 for r in results if r.decision == "retake")
    print(f"{len(results)} series scored, {retakes} retake alert(s). Results: {state / config.report.jsonl}")
    if args.keep:
        print(f"kept: {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if len(results) == len(sources) else 1
