#!/usr/bin/env python3
"""Benchmark (not a timed test): a 300-slice 512x512 CT series replayed into a watched folder.

Reports, beside their floors measured in the same run:
  * header indexing rate (files/s) vs plain ``pydicom.dcmread(stop_before_pixels=True)``
  * latency from series completion to result vs reading the series' files with pydicom
  * slice-selection cost (saliency + choice) vs scoring time
The series is built from the shared Philips 1 mm head CT (140 slices, repeated along z with new UIDs).

    python scripts/bench_agent.py [--slices 300] [--scorer learned|classical]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared/data/dicom/dcm_qa_ct/In/Philips/S21570/S2020"


def build_series(dest: Path, n: int) -> list[Path]:
    """n slices of 512x512 CT at 1 mm, from the shared series, new UIDs, contiguous positions."""
    files = sorted(p for p in SOURCE.iterdir() if p.name != "DIRFILE")
    series_uid = generate_uid()
    dest.mkdir(parents=True)
    out = []
    z0 = None
    for k in range(n):
        ds = pydicom.dcmread(files[k % len(files)])
        z0 = float(ds.ImagePositionPatient[2]) if z0 is None else z0
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z0 - k * 1.0]
        path = dest / f"I{k:04d}"
        ds.save_as(path)
        out.append(path)
    return out


def floors(files: list[Path]) -> dict[str, float]:
    t = time.perf_counter()
    for f in files:
        pydicom.dcmread(f, stop_before_pixels=True)
    header = time.perf_counter() - t
    t = time.perf_counter()
    for f in files:
        pydicom.dcmread(f).pixel_array  # noqa: B018 - decoding is the point
    full = time.perf_counter() - t
    return {"header_read_s": header, "full_read_s": full}


def run_agent(series_dir: Path, export: Path, state: Path, scorer_name: str, n: int) -> dict[str, float]:
    from mediqa.agent.config import load_config
    from mediqa.agent.scoring.factory import make_scorer
    from mediqa.agent.service import Agent

    config = load_config(None, {"state_dir": str(state), "scoring.scorer": scorer_name,
                                "completion.quiet_period_s": {"default": 1.0}, "watch.file_stable_s": 0.05,
                                "watch.reconcile_interval_s": 3600.0})
    scorer = make_scorer(config)
    export.mkdir(parents=True)
    done = threading.Event()
    stamps: dict[str, float] = {}
    agent = Agent(config, scorer, export, on_result=lambda r, i: (stamps.setdefault("result", time.perf_counter()),
                                                                  done.set()))
    index_time = [0.0]
    indexed = [0]
    original_read, original_add = agent._read, agent.tracker.add_many

    def timed_read(path, st):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        record = original_read(path, st)
        index_time[0] += time.perf_counter() - t0
        return record

    def timed_add(records):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        added = original_add(records)
        index_time[0] += time.perf_counter() - t0
        indexed[0] += len(records)
        if indexed[0] >= n and "last_indexed" not in stamps:
            stamps["last_indexed"] = time.perf_counter()
        return added

    agent._read = timed_read  # type: ignore[method-assign]
    agent.tracker.add_many = timed_add  # type: ignore[method-assign]
    original_due = agent.tracker.due

    def timed_due():  # type: ignore[no-untyped-def]
        found = original_due()
        if found and "complete" not in stamps:
            stamps["complete"] = time.perf_counter()
        return found

    agent.tracker.due = timed_due  # type: ignore[method-assign]
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), kwargs={"watch": True, "tick_s": 0.02})
    loop.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    # The console writes from its own process, as a real export does (not competing for our GIL).
    subprocess.run([sys.executable, "-m", "mediqa.cli.main", "replay", str(series_dir), str(export / "series"),
                    "--rate", "0"], check=True, capture_output=True)
    stamps["replayed"] = time.perf_counter()
    done.wait(120)
    stop.set()
    loop.join()
    result = agent.store.live()[0]
    return {
        "replay_s": stamps["replayed"] - t0,
        "index_cpu_s": index_time[0],
        "ingest_wall_s": stamps.get("last_indexed", float("nan")) - t0,
        "completion_to_result_s": stamps["result"] - stamps["complete"],
        "scoring_ms_reported": result["processing_ms"],
        "score": result["score"], "decision": result["decision"],
    }


def selection_cost(series_dir: Path) -> dict[str, float]:
    from mediqa.agent.dicom.index import scan_tree
    from mediqa.agent.dicom.volume import plan_series
    from mediqa.agent.select.saliency import saliency_for_layout, select_slices

    (records,) = scan_tree(series_dir).values()
    layout = plan_series(records)
    t = time.perf_counter()
    sal = saliency_for_layout(layout)
    t_sal = time.perf_counter() - t
    t = time.perf_counter()
    select_slices(layout, 7, "salient", saliency=sal)
    return {"saliency_all_slices_s": t_sal, "select_given_saliency_ms": (time.perf_counter() - t) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--scorer", default="learned", choices=("classical", "learned"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not SOURCE.is_dir():
        print(f"needs the shared data at {SOURCE}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="mediqa-bench-") as tmp:
        root = Path(tmp)
        files = build_series(root / "src", args.slices)
        floor_runs = [floors(files) for _ in range(args.repeat)]
        agent_runs = [run_agent(root / "src", root / f"export{i}", root / f"state{i}", args.scorer, args.slices)
                      for i in range(args.repeat)]
        sel = selection_cost(root / "src")
    med = {k: statistics.median(r[k] for r in floor_runs) for k in floor_runs[0]}
    am = {k: statistics.median(r[k] for r in agent_runs) for k in agent_runs[0] if k != "decision"}
    report = {
        "slices": args.slices, "scorer": args.scorer, "repeats": args.repeat,
        "floor_header_files_per_s": args.slices / med["header_read_s"],
        "agent_index_files_per_s": args.slices / am["index_cpu_s"],
        "agent_ingest_wall_files_per_s": args.slices / am["ingest_wall_s"],
        "floor_full_read_s": med["full_read_s"],
        "completion_to_result_s": am["completion_to_result_s"],
        "ratio_to_floor": am["completion_to_result_s"] / med["full_read_s"],
        "scoring_ms_reported": am["scoring_ms_reported"],
        **sel,
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
