"""``mediqa backfill TREE --out DIR``: score an archive with the agent's chain, locally or on Ray."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.cli.common import add_config_options, config_from_args

HELP = """\
Score every series under TREE (an archive or export tree) with the same model, config and code as the
agent, and write one Parquet row per series under DIR/results plus DIR/summary.md. A re-run scores only
the series not yet done with this model and config (resumable, idempotent). See docs/backfill.md.

examples:
  mediqa backfill /archive/2025 --out backfill-2025                 local process pool (pyarrow needed)
  mediqa backfill /archive/2025 --out bf --ray local --workers 8     a Ray instance on this machine
  mediqa backfill /nfs/archive --out /nfs/bf --ray auto              join the running Ray cluster
  mediqa backfill /nfs/archive --out /nfs/bf --ray 10.0.0.5:6379 --gpus-per-worker 1
"""
if TYPE_CHECKING:
    from mediqa.agent.config import AgentConfig
    from mediqa.backfill.store import ResultsDir

INSTALL = "pip install 'mediqa-edge[scale]'"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="score an archive (local process pool or Ray) into Parquet",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tree", type=Path, help="archive or export tree to score (read-only)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="results folder (Parquet parts, summary)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on Ray: 'local' (start one here), 'auto' or HOST:PORT")
    p.add_argument("--workers", type=int, metavar="N", help="scoring workers (default: CPUs / threads-per-worker)")
    p.add_argument("--threads-per-worker", type=int, default=1, metavar="N", help="ONNX Runtime threads per worker")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per Ray actor (default 0)")
    p.add_argument("--flush-every", type=int, default=16, metavar="N",
                   help="write a Parquet part every N series (a killed run re-scores at most N-1 series)")
    p.add_argument("--no-summary", action="store_true", help="write results only, no summary.md")
    add_config_options(p)
    p.set_defaults(func=run)


def _need(module: str, what: str) -> None:
    from mediqa.errors import MediqaError

    if importlib.util.find_spec(module) is None:
        raise MediqaError(f"{what} needs {module}, which is not installed: {INSTALL}")


def run(args: argparse.Namespace) -> int:
    from mediqa.cli.common import check_readable
    from mediqa.errors import MediqaError

    if not args.tree.exists():
        raise MediqaError(f"{args.tree} does not exist")
    if args.ray:
        _need("ray", "mediqa backfill --ray")
    _need("pyarrow", "mediqa backfill (Parquet results)")
    config = config_from_args(args)
    check_readable(args.tree, "archive folder" if args.tree.is_dir() else "file", "backfill")
    out = args.out.resolve()
    if out == args.tree.resolve() or args.tree.resolve() in out.parents:
        raise MediqaError(f"--out {args.out} is inside {args.tree}", "the archive is read-only: write elsewhere")
    threads = max(1, args.threads_per_worker)
    workers = args.workers or max(1, (os.cpu_count() or 1) // threads)
    return _run(args, config, out, workers, threads)


def _run(args: argparse.Namespace, config: AgentConfig, out: Path, workers: int, threads: int) -> int:
    from mediqa.backfill.store import ResultsDir

    results = ResultsDir(out)
    with results.lock():  # before Ray starts: a second run on this folder stops here, in one line
        return _backfill(args, config, results, workers, threads)


def _backfill(args: argparse.Namespace, config: AgentConfig, results: ResultsDir, workers: int, threads: int) -> int:
    from tqdm import tqdm

    from mediqa.backfill.keys import config_blob, config_digest, model_sha256
    from mediqa.backfill.run import Executor, run_backfill
    from mediqa.backfill.summary import write_summary
    from mediqa.errors import MediqaError

    out = results.out
    digest, plain = config_digest(config), config_blob(config)
    executor: Executor
    if args.ray:
        from mediqa.backfill.ray_engine import RayExecutor

        executor = RayExecutor(args.ray, plain, workers, threads, args.gpus_per_worker, digest, results.run_id)
    else:
        from mediqa.backfill.local import LocalExecutor

        executor = LocalExecutor(plain, workers, threads, digest, results.run_id)
    print(f"backfill of {args.tree} on {executor.description}; results in {out}", file=sys.stderr)
    bar = tqdm(total=0, unit="series", file=sys.stderr, disable=None, dynamic_ncols=True)
    try:
        report = run_backfill(args.tree, results, config, executor, progress=bar.update,
                              on_total=lambda n: bar.reset(total=n), flush_rows=args.flush_every)
    finally:
        bar.close()
        executor.close()
    rate = f"{report.series_per_s:.2f} series/s" if report.scored else "nothing to score"
    throughput = (f"{report.scored} series scored in {report.score_s:.1f} s ({rate}; header scan of "
                  f"{report.files} files {report.scan_s:.1f} s)")
    decisions = ", ".join(f"{n} {d}" for d, n in sorted(report.decisions.items())) or "none"
    print(f"{report.series} series found, {report.already_done} already done; {throughput}; decisions: {decisions}; "
          f"{report.files_skipped} file(s) skipped (skipped_files.parquet)")
    if executor.restarts:
        print(f"{executor.restarts} worker failure(s): the series in flight were retried")
    if report.series == 0:
        raise MediqaError(f"no scorable CT/MR series under {args.tree}", "is this a DICOM folder?")
    if not args.no_summary and report.discovery is not None:
        path = write_summary(results, model_sha256(config), digest, report.discovery.records, throughput=throughput)
        print(f"summary: {path}")
    return 0
