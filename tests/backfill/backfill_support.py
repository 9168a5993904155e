"""Helpers of the backfill tests (no tests here): a generated archive, the CLI as a process, Parquet rows,
and the processes of a run (to kill a worker the way the kernel would)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pydicom

from mediqa.agent.samples import write_phantom_ct

STATIONS = ("CT-NORTH", "CT-SOUTH", "")  # "" : a series without StationName


def make_archive(root: Path, n_series: int, slices: int = 6) -> Path:
    """``n_series`` phantom CT series (one in four at low dose: retakes) in station folders, plus two bad files:
    a text file and a DICOM cut in half (each a recorded skip, never a failed job)."""
    for i in range(n_series):
        station = STATIONS[i % len(STATIONS)]
        folder = root / (station or "unknown") / f"series{i:03d}"
        write_phantom_ct(folder, noise_hu=40.0 if i % 4 == 3 else 5.0, seed=i, slices=slices, size=96)
        if station:
            for f in folder.iterdir():
                ds = pydicom.dcmread(f)
                ds.StationName = station
                ds.save_as(f, enforce_file_format=True)
    (root / "notes.txt").write_text("not an image\n")
    first = sorted((root / "CT-NORTH" / "series000").iterdir())[0]
    data = first.read_bytes()
    (root / "CT-NORTH" / "series000" / "truncated.dcm").write_bytes(data[: len(data) // 2])
    return root


def mediqa(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mediqa.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def start_mediqa(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mediqa.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def score_json(tree: Path) -> dict[str, dict[str, Any]]:
    """``mediqa score --json`` on the tree, by series UID."""
    done = mediqa("score", str(tree), "--json")
    assert done.returncode == 0, done.stderr
    return {d["series_uid"]: d for d in map(json.loads, done.stdout.splitlines())}


def rows(out: Path) -> list[dict[str, Any]]:
    parts = sorted((out / "results").glob("part-*.parquet"))
    return [r for p in parts for r in pq.read_table(p).to_pylist()]


def parts(out: Path) -> int:
    return len(list((out / "results").glob("part-*.parquet")))


def wait_for_parts(out: Path, n: int, proc: subprocess.Popen[str], limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s  # a bound on a hung run, not a speed assertion
    while parts(out) < n:
        assert proc.poll() is None, f"the run ended before {n} parts: {proc.communicate()}"
        assert time.monotonic() < deadline, "no Parquet parts appeared"
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent[int(entry)] = int(fh.read().rpartition(")")[2].split()[1])
            except OSError:
                continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
