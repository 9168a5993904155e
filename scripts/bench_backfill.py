#!/usr/bin/env python3
"""Benchmark (not a test): archive backfill throughput, series/s, on 1 and 2 local workers (and a local Ray
instance with --ray) against the single-process ``mediqa score`` on the same tree.

The tree is built from the shared Philips 512x512 head CT (``scripts/bench_agent.py``'s ``build_series``:
new UIDs, contiguous positions), ``--series`` series of ``--slices`` slices, or from phantoms when ../shared
is absent. Each command runs as its own process, as a user would run it, so start-up (imports, the model
load per worker, Ray's start) is included in the wall time; the backfill's own figures (header scan, scoring)
are reported beside it. Results go to docs/backfill.md ("Measured").

    python scripts/bench_backfill.py                      # 12 series x 60 slices, score vs backfill 1 and 2
    python scripts/bench_backfill.py --ray --series 24    # also --ray local with 2 actors
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_agent import CT_SOURCE, build_series  # the sibling benchmark's series builder


def build_tree(root: Path, series: int, slices: int) -> str:
    if CT_SOURCE.is_dir():
        for i in range(series):
            build_series(CT_SOURCE, root / f"series{i:03d}", slices)
        return f"{series} series x {slices} slices of the shared Philips 512x512 head CT"
    from mediqa.agent.samples import write_phantom_ct

    for i in range(series):
        write_phantom_ct(root / f"series{i:03d}", noise_hu=5.0, seed=i, slices=slices, size=256)
    return f"{series} phantom series x {slices} slices, 256x256 (../shared absent)"


def timed(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mediqa.cli.main", *args], capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mediqa {' '.join(args[:1])} failed: {done.stderr[-2000:]}")
    return wall, done.stdout


def inner(stdout: str) -> dict[str, float]:
    """The backfill's own line: 'N series scored in T s (...; header scan of F files S s)'."""
    m = re.search(r"(\d+) series scored in ([\d.]+) s .*header scan of (\d+) files ([\d.]+) s", stdout)
    if not m:
        return {}
    return {"scored": float(m[1]), "score_s": float(m[2]), "files": float(m[3]), "scan_s": float(m[4])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=12)
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument("--ray", action="store_true", help="also run --ray local with 2 actors")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mediqa-bench-backfill-"))
    try:
        tree = root / "tree"
        what = build_tree(tree, args.series, args.slices)
        print(f"tree: {what}; load average before: {os.getloadavg()[0]:.2f}")
        rows: dict[str, dict[str, float]] = {}
        wall, out = timed(["score", str(tree), "--json"])
        assert len(out.splitlines()) == args.series
        rows["mediqa score (1 process, 2 ORT threads)"] = {"wall_s": wall}
        runs = [("backfill, 1 local worker", ["--workers", "1"]), ("backfill, 2 local workers", ["--workers", "2"])]
        if args.ray:
            runs.append(("backfill --ray local, 2 actors", ["--workers", "2", "--ray", "local"]))
        for name, extra in runs:
            out_dir = root / f"out-{len(rows)}"
            wall, out = timed(["backfill", str(tree), "--out", str(out_dir), "--no-summary", *extra])
            rows[name] = {"wall_s": wall, **inner(out)}
        print(f"load average after: {os.getloadavg()[0]:.2f}\n")
        files = args.series * args.slices
        print(f"| run | wall s | series/s (wall) | scoring s | series/s (scoring) | header scan s ({files} files) |")
        print("|---|---|---|---|---|---|")
        for name, r in rows.items():
            scoring = f"{r['score_s']:.1f} | {r['scored'] / r['score_s']:.2f}" if r.get("score_s") else "- | -"
            scan = f"{r['scan_s']:.1f}" if "scan_s" in r else "-"
            print(f"| {name} | {r['wall_s']:.1f} | {args.series / r['wall_s']:.2f} | {scoring} | {scan} |")
        if args.json:
            args.json.write_text(json.dumps({"tree": what, "runs": rows}, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
