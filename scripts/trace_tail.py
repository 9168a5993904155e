#!/usr/bin/env python3
"""Where a series' last file -> result time goes: the shipped agent, traced phase by phase.

A diagnostic beside the benchmark (``scripts/bench_agent.py`` says how long; this says where). It
exports one generated CT series into a watched folder, as ``bench_agent.py --only latency`` does, with
the agent (``mediqa watch``, shipped config) started under a tracing hook: a ``sitecustomize`` module
in a temporary folder on the agent's ``PYTHONPATH`` that wraps the loop's phases and writes when each
began and ended (wall clock) and the CPU its thread spent. The hook lives only in that folder and only
in the traced agent process (the reading workers do not load it); the agent's own code is unchanged.
The table lists every traced phase that ran between the writer's last file and the result's ``created``
stamp, beside the floor of ``bench_agent.py`` (the chosen slices' pixels plus one model pass) measured
in the same run.

    python scripts/trace_tail.py                 # CT 2,000 slices written at once
    python scripts/trace_tail.py --slices 300 --rate 100 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_agent as bench  # the benchmark's writer, agent process and floor, shared

# The hook, written as sitecustomize.py: (module, class or "", function) of each traced phase.
TRACED = (
    ("mediqa.agent.service", "Agent", "step"),
    ("mediqa.agent.loop.intake", "IntakeJob", "_index_ready"),
    ("mediqa.agent.loop.completion", "CompletionJob", "_due"),
    ("mediqa.agent.loop.completion", "CompletionJob", "_held"),
    ("mediqa.agent.loop.completion", "CompletionJob", "_files_changed"),
    ("mediqa.agent.loop.scoring", "ScoringJob", "_score_one"),
    ("mediqa.agent.loop.scoring", "ScoringJob", "_save"),
    ("mediqa.agent.series.tracker", "SeriesTracker", "records"),
    ("mediqa.agent.series.tracker", "SeriesTracker", "content"),
    ("mediqa.agent.pipeline", "", "split_for_scoring"),
    ("mediqa.agent.pipeline", "", "plan_series"),
    ("mediqa.agent.pipeline", "", "series_input"),
    ("mediqa.agent.pipeline", "", "check_content"),
    ("mediqa.engines.backends.onnxrt", "OrtBackend", "_infer"),
    ("mediqa.agent.loop.saliency", "SaliencyJob", "_saliency_step"),
    ("mediqa.agent.loop.early", "EarlyPassJob", "_pass_early"),
    ("mediqa.agent.loop.reading", "ReadPool", "submit"),
    ("mediqa.agent.loop.intake", "IntakeJob", "_read_here"),
    ("mediqa.agent.scoring.learned", "LearnedScorer", "prime"),
)
HOOK = '''
import importlib, os, sys, threading, time
if os.environ.get("MEDIQA_TRACE") and "watch" in getattr(sys, "orig_argv", []):
    _out = open(os.environ["MEDIQA_TRACE"], "a", buffering=1)
    def _wrap(owner, name, label):
        inner = getattr(owner, name)
        def traced(*args, **kwargs):
            t0, c0 = time.time(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                _out.write(f"{t0:.5f} {time.time():.5f} {time.thread_time() - c0:.5f} {label} "
                           f"{threading.current_thread().name}\\n")
        setattr(owner, name, traced)
    for module, cls, name in TRACED:
        mod = importlib.import_module(module)
        _wrap(getattr(mod, cls) if cls else mod, name, f"{cls}.{name}" if cls else name)
'''


def trace_once(root: Path, slices: int, rate: float) -> tuple[dict[str, float], list[tuple[float, float, float, str]]]:
    files = bench.build_series(bench.CT_SOURCE, root / "src", slices)
    floor = bench.pixel_model_floor_s(files)
    hook_dir = root / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(f"TRACED = {TRACED!r}\n{HOOK}", encoding="utf-8")
    trace = root / "trace.txt"
    env_before = dict(os.environ)
    os.environ["MEDIQA_TRACE"] = str(trace)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook_dir), os.environ.get("PYTHONPATH")) if p)
    try:
        agent = bench.AgentProcess(root / "export", root / "state").start()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    try:
        agent.wait_ready()
        writer = bench.export(root / "src", root / "export" / "s", rate)
        last = bench.written(writer)[1]
        created = float(agent.wait_results(1, 300)[0]["created"])  # type: ignore[arg-type]
        time.sleep(0.5)  # the pass that scored it ends and is written
    finally:
        agent.stop()
    spans = []
    for line in trace.read_text(encoding="utf-8").splitlines():
        t0, t1, cpu, label, _thread = line.split(" ", 4)
        start, end = float(t0) - last, float(t1) - last
        if end > 0 and start < created - last:
            spans.append((start, end, float(cpu), label))
    return {"latency_s": created - last, "floor_s": floor}, sorted(spans)


def report(figures: dict[str, float], spans: list[tuple[float, float, float, str]]) -> str:
    latency, floor = figures["latency_s"], figures["floor_s"]
    lines = [f"last file -> result {latency * 1000:.0f} ms; floor (chosen slices' pixels + one model pass, same run) "
             f"{floor * 1000:.0f} ms; ratio {latency / floor:.2f}",
             f"{'from':>8} {'to':>8} {'ms':>7} {'cpu ms':>7}  phase (offsets from the last file, ms)"]
    for start, end, cpu, label in spans:
        if end - start >= 0.0005:  # the idle loop's empty phases are noise here
            ms = (end - start) * 1000
            lines.append(f"{start * 1000:8.1f} {end * 1000:8.1f} {ms:7.1f} {cpu * 1000:7.1f}  {label}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=2000, help="CT slices in the series (default 2000)")
    parser.add_argument("--rate", type=float, default=0.0, help="files per second (default 0: at once)")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each reported (default 1)")
    parser.add_argument("--json", action="store_true", help="print the spans as JSON too")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="mediqa-trace-") as tmp:
            figures, spans = trace_once(Path(tmp), args.slices, args.rate)
        print(f"\nrun {i + 1} of {args.repeat} (load {os.getloadavg()[0]:.2f})\n{report(figures, spans)}")
        if args.json:
            print(json.dumps({"figures": figures, "spans": spans}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
