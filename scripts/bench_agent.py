#!/usr/bin/env python3
"""Benchmark (not a timed test) of the shipped agent, as a console would see it.

The agent runs as ``mediqa watch`` in its own process with the shipped configuration: only the export
folder and the state dir are set (any other override is listed under "overrides" in the output). A
writer process exports series into the watched folder; latency is measured from the writer's last
file to the result line in ``results.jsonl`` (its ``created`` stamp). Every figure is the median of
``--repeat`` runs and comes with its floor measured in the same run (this machine is shared and noisy:
ratios matter more than seconds), and the load average is printed with the table.

Each run starts from a settled disk: the files of the runs before and the series a run generates as its
source are flushed (``os.sync``) before the run measures anything, so no run depends on the write-back
of data the benchmark itself made (the export under test is still written back in the measured window).
Why (2026-12-03): that write-back slowed the writer, and a slower writer is easier to keep up with; CT
300 written at once measured 0.79-1.29x its floor with the build's pages still dirty and 1.36-5.72x
flushed, and unflushed 1.42x or 2.04x depending on whether the ``index`` runs came before (flushed: 3.34x
and 3.12x). The latency rows report the writer's pace (files/s) beside each figure. ``--no-settle``
measures the old way, to compare.

Scenarios (``--only`` picks some):
  index    header indexing rate vs bare ``pydicom.dcmread(stop_before_pixels=True)`` of the same files
  latency  last file -> result for CT 300 and CT 2000 slices (the expected count is in the headers), written
           as fast as the disk allows and at --rate files/s (a console's pace), vs the floor: reading the chosen
           slices' pixels plus one model pass on ONNX Runtime; with the pace the writer kept
  quiet    last file -> result for a series without a count (CT 300 and MR 170 at --rate files/s), minus its
           quiet period, vs the same floor (what scoring ahead of the quiet period's end saves)
  burst    20 series arriving together (10 CT + 10 MR, 150 slices each): p50/p90/max last file -> result,
           vs each series' own quiet period + 2 s; the watch thread's CPU share during the burst
  backlog  start-up with a backlog (default 20,000 files in 140 series): time to first result, files/s
  idle     RSS after the backlog once the agent and its workers are idle (sheets and reports made too), idle CPU
  ort      ONNX Runtime CPU: 1 vs 2 threads, spin-wait on/off, per series (28 crops) on this machine

    python scripts/bench_agent.py                      # everything, 3 repeats (make bench)
    python scripts/bench_agent.py --only latency --repeat 5
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "dicom"
CT_SOURCE = SHARED / "dcm_qa_ct/In/Philips/S21570/S2020"  # 512x512 head CT, 1 mm
MR_SOURCE = SHARED / "dcm_qa_philips_enh/In/cl"  # 256x256 3D T1
SCENARIOS = ("index", "latency", "quiet", "burst", "backlog", "idle", "ort")


# --- series on disk --------------------------------------------------------------------------------
def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in ("DIRFILE", "LICENSE"))


def build_series(src: Path, dest: Path, n: int, *, expected: bool = True) -> list[Path]:
    """n slices from a real series, new UIDs, contiguous positions; ImagesInAcquisition = n when expected."""
    files = _sources(src)
    templates = [pydicom.dcmread(f) for f in files[: min(len(files), 40)]]
    series_uid = generate_uid()
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        ds = templates[k % len(templates)]
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        pos = list(ds.ImagePositionPatient)
        iop = np.array(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        base = np.array(pos, float) - float(np.dot(pos, normal)) * normal
        ds.ImagePositionPatient = [float(v) for v in base + normal * (k * 1.0)]
        if expected:
            ds.ImagesInAcquisition = n
        elif "ImagesInAcquisition" in ds:
            del ds.ImagesInAcquisition
        make_distinct(ds)
        path = dest / f"I{k:05d}.dcm"
        ds.save_as(path)
        out.append(path)
    settle_disk()
    return out


DISTINCT_PIXELS = 4096  # pixels per generated slice whose lowest bit is flipped


def make_distinct(ds: pydicom.Dataset) -> None:
    """Flip the lowest bit of a few thousand pixels, chosen by the instance's UID: every generated slice is
    distinct, as real slices are. The agent keeps model outputs per slice by its exact input (and reuses
    them for an identical slice): copies of the same 40 templates would be scored once and then served
    from that store, which real series never are. A change of one unit on 1-2 % of the pixels."""
    if ds.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in ds:
        return
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[int(ds.BitsAllocated)]
    pixels = np.frombuffer(ds.PixelData, dtype=dtype).copy()
    rng = np.random.default_rng(zlib.crc32(str(ds.SOPInstanceUID).encode()))
    pixels[rng.integers(0, pixels.size, DISTINCT_PIXELS)] ^= 1
    ds.PixelData = pixels.tobytes()


WRITER = r"""
import os, shutil, sys, time
src, dest, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
names = sorted(os.listdir(src))
os.makedirs(dest, exist_ok=True)
start, first = time.monotonic(), None
for i, name in enumerate(names):
    if rate > 0:
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
    tmp = os.path.join(dest, "." + name + ".part")
    shutil.copyfile(os.path.join(src, name), tmp)
    os.replace(tmp, os.path.join(dest, name))
    first = first or time.time()
print(first, time.time())
"""


def export(src: Path, dest: Path, rate: float = 0.0) -> subprocess.Popen[str]:
    """Copy a series into the export folder from its own process: ``rate`` files per second, or (0) as fast as
    the disk allows. Each file is written as a dot file and renamed into place, as consoles and copiers do."""
    return subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(dest), str(rate)], stdout=subprocess.PIPE,
                            text=True)


def written(writer: subprocess.Popen[str]) -> tuple[float, float]:
    """When an ``export`` writer put its first and its last file in place (wall clock), once it has ended."""
    out = (writer.communicate()[0] or "").split()
    return (float(out[0]), float(out[1])) if len(out) == 2 else (float("nan"), float("nan"))


OVERRIDES: list[str] = []  # ``--set`` items: config overrides of every agent run (none by default)
SETTLE = [True]  # flush the benchmark's own writes before each run measures (``--no-settle``: off)


def settle_disk() -> None:
    """Write back what is waiting (the previous runs' files, a generated source series) before timing."""
    if SETTLE[0]:
        os.sync()


# --- the agent as a black box ----------------------------------------------------------------------
class AgentProcess:
    """``mediqa watch`` with the shipped config; only folder and state dir are given."""

    def __init__(self, folder: Path, state: Path, overrides: Iterable[str] | None = None) -> None:
        self.folder, self.state = folder, state
        self.overrides = list(OVERRIDES if overrides is None else overrides)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state.parent / f"{state.name}.log"
        self.started_at = float("nan")
        self.db_seen_at = float("nan")

    def start(self) -> AgentProcess:
        self.folder.mkdir(parents=True, exist_ok=True)  # `mediqa watch` refuses a folder that does not exist
        cmd = [sys.executable, "-m", "mediqa.cli.main", "watch", "--folder", str(self.folder),
               "--state-dir", str(self.state)]
        for item in self.overrides:
            cmd += ["--set", item]
        self.started_at = time.time()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out)
        return self

    def check(self) -> None:
        """The agent still runs; if not, say why (the tail of its log)."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"mediqa watch exited with {self.proc.returncode}:\n{tail}")

    def results(self) -> list[dict[str, object]]:
        path = self.state / "results.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def wait_results(self, n: int, timeout_s: float) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.results()
            if len(found) >= n:
                return found
            self.check()
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.results())} of {n} results after {timeout_s:.0f} s")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """The agent is up once its state DB exists (the model is loaded and warmed up before the agent opens
        it) and its first pass had a moment to run (the watcher starts right after)."""
        deadline = time.monotonic() + timeout_s
        while not (self.state / "state.sqlite").exists():
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the agent did not start within {timeout_s:.0f} s")
            time.sleep(0.01)
        self.db_seen_at = time.time()
        time.sleep(2.0)
        self.check()

    def threads(self) -> dict[int, tuple[float, float]]:
        """Per thread id: (CPU seconds, start time as seconds since the epoch), from Linux /proc.

        Start times are counted from the process's own start (``/proc`` gives them in ticks since boot, and
        the boot time only to the second), which this object noted when it spawned it.
        """
        assert self.proc is not None
        tick = os.sysconf("SC_CLK_TCK")
        raw: dict[int, tuple[float, int]] = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # after the ")": state is field 3 of proc(5); utime 14, stime 15, starttime 22
            raw[int(task.name)] = ((int(fields[11]) + int(fields[12])) / tick, int(fields[19]))
        born = raw.get(self.proc.pid, (0.0, min((v[1] for v in raw.values()), default=0)))[1]
        return {tid: (cpu, self.started_at + (start - born) / tick) for tid, (cpu, start) in raw.items()}

    def tree_cpu_s(self) -> float:
        """CPU seconds of the agent and every process below it (reading workers, the SR builder), Linux /proc;
        a child that has exited is no longer counted."""
        assert self.proc is not None
        tick = os.sysconf("SC_CLK_TCK")
        parent: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry.name)
            parent[pid] = int(fields[1])  # ppid: field 4 of proc(5)
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
        total, todo = 0.0, [self.proc.pid]
        while todo:
            pid = todo.pop()
            total += cpu.get(pid, 0.0)
            todo.extend(child for child, ppid in parent.items() if ppid == pid)
        return total

    def wait_idle(self, timeout_s: float = 300.0, window_s: float = 2.0, share: float = 0.05,
                  windows: int = 3) -> float:
        """Seconds until the agent's process tree used under ``share`` of a core over ``windows`` windows of
        ``window_s`` in a row (the work after the results too: contact sheets, SR reports); ``timeout_s`` at
        most. One quiet window was not enough: a lull between the results and the reports made after them
        (SR_DEFER_MAX_S) passed for idle, and the RSS reading came before the memory release (2026-12-02)."""
        start = time.monotonic()
        last = self.tree_cpu_s()
        quiet = 0
        while time.monotonic() - start < timeout_s:
            time.sleep(window_s)
            self.check()
            now = self.tree_cpu_s()
            quiet = quiet + 1 if now - last < share * window_s else 0
            if quiet >= windows:
                return time.monotonic() - start
            last = now
        return float("nan")

    def threads_cpu_s(self) -> dict[str, float]:
        """CPU seconds per thread id (Linux /proc)."""
        return {str(tid): cpu for tid, (cpu, _) in self.threads().items()}

    def watch_thread_ids(self) -> set[int]:
        """The file watcher's threads: named ``mediqa-watch`` by the agent (Linux), or, for an agent that
        does not name them, those started right after the state database appeared.

        Python 3.11 gives threads no OS names of its own, so unnamed ones are told apart by when they started:
        the main thread first, ONNX Runtime's pool while the model loads and warms up (before the agent opens
        its state), then the agent creates its state database and starts the watcher (observer, emitter,
        inotify reader). ``wait_ready`` notes when the database appeared (polling every 10 ms; /proc counts
        in 10 ms ticks).
        """
        assert self.proc is not None
        named = set()
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                if (task / "comm").read_text().strip() == "mediqa-watch":
                    named.add(int(task.name))
            except OSError:
                continue
        if named:
            return named
        cutoff = self.db_seen_at - 0.05
        started = sorted((start, tid) for tid, (_, start) in self.threads().items()
                         if tid != self.proc.pid and start >= cutoff)
        return {tid for _, tid in started[:3]}  # observer, emitter, inotify reader

    def indexed_files(self) -> int:
        """Files the agent has recorded (indexed or skipped), read from its state database (read-only)."""
        import sqlite3

        try:
            conn = sqlite3.connect(f"file:{self.state / 'state.sqlite'}?mode=ro", uri=True, timeout=1.0)
            try:
                return int(conn.execute("SELECT COUNT(*) FROM files WHERE status IN ('indexed','skipped')"
                                        ).fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            return -1

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- floors -----------------------------------------------------------------------------------------
def header_floor_s(files: list[Path]) -> float:
    t = time.perf_counter()
    for f in files:
        pydicom.dcmread(f, stop_before_pixels=True)
    return time.perf_counter() - t


def pixel_model_floor_s(files: list[Path], slices: int = 7) -> float:
    """Decode `slices` files spread over the series and run the default model once on their crops."""
    from mediqa.agent.scoring.models import default_model_path
    from mediqa.engines.backends.onnxrt import OrtBackend
    from mediqa.model_card import read_card

    model = default_model_path()
    card = read_card(model)
    pre = card.preprocessing
    with OrtBackend(model, threads=2).load() as backend:
        n = slices * pre.crops_per_slice
        feed: dict[str, np.ndarray] = {"image": np.zeros((n, pre.channels, pre.crop_size, pre.crop_size), np.float32),
                "prompt": np.zeros((n, 4), np.int64)}
        backend.infer(feed)  # warm-up, as the agent does at start
        picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, slices)]
        t = time.perf_counter()
        for f in picks:
            pydicom.dcmread(f).pixel_array  # noqa: B018 - decoding is the point
        backend.infer(feed)
        return time.perf_counter() - t


# --- scenarios --------------------------------------------------------------------------------------
def scenario_index(root: Path) -> dict[str, float]:
    files = build_series(CT_SOURCE, root / "src", 300)
    floor = header_floor_s(files)
    agent = AgentProcess(root / "export", root / "state").start()
    try:
        agent.wait_ready()
        t0 = time.time()
        export(root / "src", root / "export" / "s").wait()
        result = agent.wait_results(1, 120)[0]
        wall = float(result["created"]) - t0  # type: ignore[arg-type]
    finally:
        agent.stop()
    return {"floor_header_files_per_s": len(files) / floor, "agent_files_to_result_per_s": len(files) / wall}


def _last_file_to_result_s(root: Path, rate: float) -> tuple[float, float]:
    """The series in ``root/src`` exported into a watched folder (at ``rate`` files/s, 0: at once): last file
    written -> its first result, and the pace the writer kept (files/s, first to last file)."""
    agent = AgentProcess(root / "export", root / "state").start()
    try:
        agent.wait_ready()
        writer = export(root / "src", root / "export" / "s", rate)
        first_file, last_file = written(writer)
        result = agent.wait_results(1, 300)[0]
    finally:
        agent.stop()
    files = sum(1 for _ in (root / "src").iterdir())
    pace = (files - 1) / (last_file - first_file) if last_file > first_file else float("nan")
    return float(result["created"]) - last_file, pace  # type: ignore[arg-type]


def scenario_latency(root: Path, slices: int, rate: float = 0.0) -> dict[str, float]:
    """Last file -> result, written as fast as possible (``rate`` 0) or at ``rate`` files per second."""
    files = build_series(CT_SOURCE, root / "src", slices)
    floor = pixel_model_floor_s(files)
    latency, pace = _last_file_to_result_s(root, rate)
    name = f"ct{slices}" + (f"_at{rate:g}" if rate else "")
    return {f"{name}_last_file_to_result_s": latency, f"{name}_floor_s": floor, f"{name}_ratio": latency / floor,
            f"{name}_writer_files_per_s": pace}


def scenario_quiet(root: Path, modality: str, slices: int, rate: float) -> dict[str, float]:
    """Last file -> result of a series that announces no count: its quiet period, and what comes after it."""
    files = build_series(CT_SOURCE if modality == "CT" else MR_SOURCE, root / "src", slices, expected=False)
    floor = pixel_model_floor_s(files)
    over = _last_file_to_result_s(root, rate)[0] - _quiet_periods()[modality]
    name = f"quiet_{modality.lower()}{slices}"
    return {f"{name}_over_quiet_s": over, f"{name}_floor_s": floor, f"{name}_over_quiet_ratio": over / floor}


def _quiet_periods() -> dict[str, float]:
    """The shipped quiet periods (what a series without an expected count waits after its last file)."""
    from mediqa.agent.config import load_config

    completion = load_config().completion
    return {m: completion.quiet_for(m) for m in ("CT", "MR")}


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def scenario_burst(root: Path) -> dict[str, float]:
    sources = []
    for i in range(20):
        src = root / f"src{i}"
        build_series(CT_SOURCE if i % 2 == 0 else MR_SOURCE, src, 150, expected=False)
        sources.append(src)
    quiet = _quiet_periods()
    modality = {i: "CT" if i % 2 == 0 else "MR" for i in range(20)}
    agent = AgentProcess(root / "export", root / "state").start()
    try:
        agent.wait_ready()
        watch_ids = agent.watch_thread_ids()
        before = agent.threads()
        t0 = time.monotonic()
        writers = [export(src, root / "export" / f"s{i}") for i, src in enumerate(sources)]
        last = {}
        for i, w in enumerate(writers):
            last[i] = written(w)[1]
        burst_wall = time.monotonic() - t0
        after = agent.threads()
        results = agent.wait_results(20, 300)
    finally:
        agent.stop()
    uid_of = {}
    for i, src in enumerate(sources):
        uid_of[str(pydicom.dcmread(next(src.iterdir()), stop_before_pixels=True).SeriesInstanceUID)] = i
    first: dict[int, float] = {}
    for r in results:  # a series' first result (a later one supersedes it)
        i = uid_of[str(r["series_uid"])]
        first[i] = min(first.get(i, float("inf")), float(r["created"]))  # type: ignore[arg-type]
    latency = [first[i] - last[i] for i in first]
    over = [first[i] - last[i] - quiet[modality[i]] for i in first]
    watch_cpu = sum(after[t][0] - before.get(t, (0.0, 0.0))[0] for t in watch_ids if t in after)
    return {"burst_p50_s": statistics.median(latency), "burst_p90_s": _p90(latency), "burst_max_s": max(latency),
            "burst_over_quiet_p90_s": _p90(over), "burst_over_quiet_goal_s": 2.0,
            "burst_write_s": burst_wall, "watch_threads": float(len(watch_ids)),
            "watch_threads_cpu_share": watch_cpu / burst_wall,
            "burst_superseded": float(len(results) - len(first))}


def scenario_backlog(root: Path, files: int, series: int) -> dict[str, float]:
    per = max(1, files // series)
    export_dir = root / "export"
    made = 0
    for i in range(series):  # two real-based series, then header-only clones of them (new UIDs)
        dest = export_dir / f"s{i:03d}"
        if i < 2:
            build_series(CT_SOURCE if i == 0 else MR_SOURCE, dest, per, expected=False)
        else:
            _clone(export_dir / f"s{i % 2:03d}", dest)
        made += per
    agent = AgentProcess(export_dir, root / "state").start()
    try:
        t0 = agent.started_at
        indexed_at = float("nan")
        deadline = time.monotonic() + 1800
        found: list[dict[str, object]] = []
        t_first = float("nan")
        while time.monotonic() < deadline:  # the first result, and when every file is indexed
            agent.check()
            found = agent.results()
            if found and t_first != t_first:
                t_first = min(float(r["created"]) for r in found) - t0  # type: ignore[arg-type]
            if indexed_at != indexed_at and agent.indexed_files() >= made:
                indexed_at = time.time() - t0
            if len({r["series_uid"] for r in found}) >= series and indexed_at == indexed_at:
                break
            time.sleep(0.25)
        else:
            raise TimeoutError(f"{len(found)} of {series} results after 1800 s")
        t_all = max(float(r["created"]) for r in found) - t0  # type: ignore[arg-type]
        idle_after = agent.wait_idle()  # the sheets and reports made after the results, too
        time.sleep(3.0)  # the loop's next pass releases the memory
        rss = agent.rss_mb()
        c0 = sum(cpu for cpu, _ in agent.threads().values())
        time.sleep(10.0)
        idle_cpu = (sum(cpu for cpu, _ in agent.threads().values()) - c0) / 10.0
        rss_later = agent.rss_mb()
    finally:
        agent.stop()
    return {"backlog_files": made, "backlog_first_result_s": t_first, "backlog_indexed_s": indexed_at,
            "backlog_index_files_per_s": made / indexed_at, "backlog_all_results_s": t_all,
            "backlog_files_per_s": made / t_all, "backlog_idle_after_last_result_s": idle_after,
            "idle_rss_mb_after_backlog": rss,
            "idle_rss_mb_15s_later": rss_later, "idle_cpu_share": idle_cpu}


def _clone(src: Path, dest: Path) -> None:
    """Copy a generated series with new UIDs and distinct pixels (``make_distinct``)."""
    dest.mkdir(parents=True)
    series_uid = generate_uid()
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        make_distinct(ds)
        ds.save_as(dest / f.name)


def scenario_ort() -> dict[str, float]:
    from mediqa.agent.scoring.models import default_model_path
    from mediqa.engines.backends.onnxrt import OrtBackend
    from mediqa.model_card import read_card

    model = default_model_path()
    pre = read_card(model).preprocessing
    n = 7 * pre.crops_per_slice
    image = np.random.default_rng(0).uniform(-1, 1, (n, pre.channels, pre.crop_size, pre.crop_size))
    feed: dict[str, np.ndarray] = {"image": image.astype(np.float32), "prompt": np.zeros((n, 4), np.int64)}
    out = {}
    for threads in (1, 2):
        for spin in (False, True):
            with OrtBackend(model, threads=threads, spinning=spin).load() as backend:
                backend.infer(feed)
                times = []
                for _ in range(15):
                    t = time.perf_counter()
                    backend.infer(feed)
                    times.append(time.perf_counter() - t)
            out[f"ort_{threads}t_{'spin' if spin else 'nospin'}_ms"] = statistics.median(times) * 1000
    for arena in (False, True):  # the agent's default (2 threads, no spin) with and without ORT's memory arena
        before = _rss_mb()
        with OrtBackend(model, threads=2, memory_arena=arena).load() as backend:
            times = []
            for _ in range(15):
                t = time.perf_counter()
                backend.infer(feed)
                times.append(time.perf_counter() - t)
            out[f"ort_2t_arena_{'on' if arena else 'off'}_ms"] = statistics.median(times) * 1000
            out[f"ort_2t_arena_{'on' if arena else 'off'}_rss_growth_mb"] = _rss_mb() - before
    return out


def _rss_mb() -> float:
    """This process's resident memory (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _repeat(n: int, fn: Callable[[Path], dict[str, float]]) -> dict[str, float]:
    runs = []
    for _ in range(n):
        root = Path(tempfile.mkdtemp(prefix="mediqa-bench-"))
        settle_disk()
        try:
            runs.append(fn(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return _median_of(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per scenario; medians are reported (default 3)")
    ap.add_argument("--only", action="append", choices=SCENARIOS, help="run only these scenarios")
    ap.add_argument("--rate", type=float, default=100.0, help="files/s of the paced latency runs (default 100)")
    ap.add_argument("--backlog-files", type=int, default=20000)
    ap.add_argument("--backlog-series", type=int, default=140)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every agent run (an A/B of one setting); printed in the report")
    ap.add_argument("--no-settle", action="store_true",
                    help="do not flush the benchmark's own writes before each run (to compare with)")
    args = ap.parse_args()
    OVERRIDES[:] = args.set
    SETTLE[0] = not args.no_settle
    if not (CT_SOURCE.is_dir() and MR_SOURCE.is_dir()):
        print(f"needs the shared data at {SHARED}", file=sys.stderr)
        return 1
    chosen = args.only or list(SCENARIOS)
    report: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg(),
                                 "repeats": args.repeat, "config": "shipped configs/agent.yaml",
                                 "overrides": list(args.set), "settled_disk": SETTLE[0]}
    figures: dict[str, float] = {}
    if "index" in chosen:
        figures.update(_repeat(args.repeat, scenario_index))
    if "latency" in chosen:
        for n, rate in ((300, 0.0), (2000, 0.0), (300, args.rate), (2000, args.rate)):
            figures.update(_repeat(args.repeat, functools.partial(scenario_latency, slices=n, rate=rate)))
    if "quiet" in chosen:
        for modality, n in (("CT", 300), ("MR", 170)):
            figures.update(_repeat(args.repeat, functools.partial(scenario_quiet, modality=modality, slices=n,
                                                                  rate=args.rate)))
    if "burst" in chosen:
        figures.update(_repeat(args.repeat, scenario_burst))
    if "backlog" in chosen or "idle" in chosen:
        figures.update(_repeat(1, functools.partial(scenario_backlog, files=args.backlog_files,
                                                    series=args.backlog_series)))
    if "ort" in chosen:
        figures.update(_median_of([scenario_ort() for _ in range(args.repeat)]))
    report["load_after"] = os.getloadavg()
    report["figures"] = {k: round(v, 4) for k, v in figures.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
