#!/usr/bin/env python3
"""How the opt-in adaptive completion rule (``completion.adaptive``) would have done on console rhythms.

Replays simulated export rhythms of series that announce no instance count into the agent's
``SeriesTracker`` (a real state database in a temporary folder, an injected clock), and at each moment
the agent would look (after each file, and when the rule's wait ends) asks both rules whether the series is
complete: the quiet period (``tracker.due``) and the adaptive rule (``agent/loop/rhythm.py``). A series the
adaptive rule completes before its last file is *superseded* (the late file re-opens it; the new result
replaces the first); one it completes before the quiet period would have, on all its files, is *early*.

Rhythms (seeded; each replay draws its own parameters):
  steady   one file every 10-100 ms (a console writing to local disk), +-30 % jitter
  stacks   2-5 stacks of 20-120 files, 1-8 s between stacks (an operator exporting stack after stack)
  share    a network share that delivers in bursts: 5-40 files every 2-6 s, gaps drawn log-normally
  pause    steady, with one pause of 2-9 s somewhere in the series (a busy console, a hiccup)

    python scripts/sim_adaptive_completion.py                 # the shipped k, min and quiet period
    python scripts/sim_adaptive_completion.py --k 5 10 20 --replays 300
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from mediqa.agent.config import CompletionConfig, load_config
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.loop import rhythm
from mediqa.agent.series.tracker import SeriesTracker
from mediqa.agent.state.db import StateDB, open_state

Rhythm = Callable[[random.Random], list[float]]  # arrival times of one series' files (seconds from its first)


def steady(rng: random.Random) -> list[float]:
    gap, n = rng.uniform(0.01, 0.1), rng.randint(30, 400)
    return _times(gap * rng.uniform(0.7, 1.3) for _ in range(n - 1))


def stacks(rng: random.Random) -> list[float]:
    gaps: list[float] = []
    for s in range(rng.randint(2, 5)):
        if s:
            gaps.append(rng.uniform(1.0, 8.0))
        gap = rng.uniform(0.01, 0.1)
        gaps += [gap * rng.uniform(0.7, 1.3) for _ in range(rng.randint(20, 120) - 1)]
    return _times(gaps)


def share(rng: random.Random) -> list[float]:
    gaps: list[float] = []
    every = rng.uniform(2.0, 6.0)
    for b in range(rng.randint(2, 10)):
        if b:
            gaps.append(every * rng.uniform(0.6, 1.4))
        gaps += [rng.lognormvariate(-4.0, 1.0) for _ in range(rng.randint(5, 40) - 1)]
    return _times(gaps)


def pause(rng: random.Random) -> list[float]:
    times = steady(rng)
    cut = rng.randint(1, len(times) - 1)
    extra = rng.uniform(2.0, 9.0)
    return times[:cut] + [t + extra for t in times[cut:]]


RHYTHMS: dict[str, Rhythm] = {"steady": steady, "stacks": stacks, "share": share, "pause": pause}


def _times(gaps: object) -> list[float]:
    out, t = [0.0], 0.0
    for g in gaps:  # type: ignore[attr-defined]
        t += g
        out.append(t)
    return out


def _record(uid: str, i: int) -> InstanceRecord:
    return InstanceRecord(path=f"/sim/{uid}/{i:05d}.dcm", size=1, mtime_ns=i, sop_instance_uid=f"{uid}.{i}",
                          series_uid=uid, study_uid="1.2.3", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                          transfer_syntax="1.2.840.10008.1.2.1", modality="CT")


def replay(times: list[float], tracker: SeriesTracker, clock: list[float], uid: str, quiet: float, k: float,
           min_s: float) -> tuple[float, float]:
    """(adaptive completion, quiet completion) in seconds after the first file; the tracker records the files."""
    start = clock[0]
    seen = rhythm.Rhythm()
    adaptive_at = float("nan")
    for i, t in enumerate(times):
        if adaptive_at != adaptive_at:  # not complete yet by the adaptive rule: does it end before this file?
            deadline = (seen.last + rhythm.adaptive_wait(seen.gaps, quiet, k, min_s)) if seen.last is not None \
                else float("inf")
            if deadline < t:
                adaptive_at = deadline
        clock[0] = start + t
        tracker.add(_record(uid, i))
        seen.add(t)
    if adaptive_at != adaptive_at:
        assert seen.last is not None
        adaptive_at = seen.last + rhythm.adaptive_wait(seen.gaps, quiet, k, min_s)
    clock[0] = start + times[-1] + quiet + 1e-6
    due = [st.series_uid for st in tracker.due()]
    assert uid in due, "the tracker's quiet period must complete the series"
    return adaptive_at, times[-1] + quiet


def simulate(make: Rhythm, db: StateDB, rng: random.Random, replays: int, quiet: float, k: float, min_s: float
             ) -> tuple[int, int, list[float], int]:
    """(early, superseded, seconds saved by the early ones, superseded under the quiet rule) over ``replays``."""
    clock = [0.0]
    tracker = SeriesTracker(db, CompletionConfig(quiet_period_s={"default": quiet}), lambda: clock[0])
    early = superseded = quiet_superseded = 0
    saved: list[float] = []
    for r in range(replays):
        times = make(rng)
        clock[0] += 1000.0  # series one after the other
        adaptive_at, quiet_at = replay(times, tracker, clock, f"1.2.{r}", quiet, k, min_s)
        if max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0) >= quiet:
            quiet_superseded += 1  # the fixed quiet period is cut too, by a pause as long as itself
        if adaptive_at < times[-1]:
            superseded += 1
        elif adaptive_at < quiet_at - 1e-9:
            early += 1
            saved.append(quiet_at - adaptive_at)
    return early, superseded, saved, quiet_superseded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shipped = load_config().completion
    ap.add_argument("--k", type=float, nargs="+", default=[shipped.adaptive_k], help="adaptive_k values to try")
    ap.add_argument("--min-s", type=float, nargs="+", default=[shipped.adaptive_min_s],
                    help="adaptive_min_s values to try")
    ap.add_argument("--quiet-s", type=float, default=shipped.quiet_for("CT"), help="quiet period (default: CT's)")
    ap.add_argument("--replays", type=int, default=200, help="series per rhythm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pause-margin", action="store_true", help="the median rule alone (PAUSE_MARGIN 0)")
    args = ap.parse_args()
    if args.no_pause_margin:
        rhythm.PAUSE_MARGIN = 0.0
    print(f"quiet period {args.quiet_s:g} s, pause margin {rhythm.PAUSE_MARGIN:g}, {args.replays} series per rhythm, "
          f"seed {args.seed}")
    print(f"{'rhythm':8} {'k':>5} {'min s':>6} {'early':>7} {'superseded':>11} {'saved s':>8} "
          f"{'quiet rule superseded':>22}")
    with tempfile.TemporaryDirectory(prefix="mediqa-sim-") as tmp:
        for k, min_s, (name, make) in ((k, m, r) for k in args.k for m in args.min_s for r in RHYTHMS.items()):
            db = open_state(Path(tmp) / f"{name}-{k:g}-{min_s:g}")
            try:
                row = simulate(make, db, random.Random(f"{args.seed}:{name}"), args.replays, args.quiet_s, k, min_s)
            finally:
                db.close()
            early, superseded, saved, quiet_superseded = row
            n = args.replays
            median = f"{statistics.median(saved):.1f}" if saved else "-"
            print(f"{name:8} {k:5g} {min_s:6g} {early / n:7.0%} {superseded / n:11.0%} {median:>8} "
                  f"{quiet_superseded / n:22.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
