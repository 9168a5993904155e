#!/usr/bin/env python3
"""Benchmark (not a timed test): our DICOM node on loopback vs Orthanc, same run: throughput and latency.

One generated CT series (``write_phantom_ct``, 300 slices of 512x512 by default) is sent by dcmtk's
``storescu`` (one association, default proposals) to each receiver in turn, ``--repeat`` times,
alternating the order. Both receivers make each instance durable before answering (our node: write,
fsync, rename, fsync the folder; Orthanc: its default ``SyncStorageArea``). Orthanc (Debian package
``orthanc``) runs from a temporary config on free ports, with its storage in a temp folder, and is
stopped after. The load average is printed with each table: this machine is shared, so compare the
rows of one run, not runs.

Throughput: our bare node (no agent) with each ``--pdu`` size (its max receive PDU); times are
storescu's wall time, first byte to exit.

Latency (``--latency``, on by default): the whole agent (``NodeFeed`` -> ``Agent.run`` -> scorer, the
default quiet period unless ``--quiet``) receives the series; measured: storescu's wall time, the last
instance stored -> the association released, the longest gap between two instances, and the last
instance stored -> the result (``on_result``). Beside it Orthanc receives the same series: storescu's
wall time (Orthanc answers the last instance at its end) and, with ``StableAge`` 1 s, the last
instance's answer (storescu's exit) -> its ``OnStableSeries`` Lua callback (an HTTP POST to this
process).

    python scripts/bench_dicom_node.py                       # 300 slices, 3 repeats, PDU 16382 and 262144
    python scripts/bench_dicom_node.py --slices 100 --repeat 1 --pdu 262144 --no-orthanc
    python scripts/bench_dicom_node.py --no-throughput --scorer classical --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout, like the other scripts

from mediqa.agent.config import config_from_dict  # noqa: E402
from mediqa.agent.samples import write_phantom_ct  # noqa: E402
from mediqa.agent.scoring.factory import make_scorer  # noqa: E402
from mediqa.agent.service import Agent  # noqa: E402
from mediqa.agent.watch.dicom_node import DicomNode, DicomNodeConfig  # noqa: E402
from mediqa.agent.watch.node_feed import NodeFeed  # noqa: E402

TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dcmtk_storescu() -> str | None:
    """dcmtk's storescu on PATH, not pynetdicom's Python app of the same name (venv bin)."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which("storescu", path=folder) if folder else None
        if path and "$dcmtk:" in subprocess.run([path, "--version"], capture_output=True, text=True,
                                                 timeout=10).stdout:
            return path
    return None


STORESCU = dcmtk_storescu() or "storescu"


def _storescu(port: int, aec: str, files: list[Path]) -> float:
    t0 = time.perf_counter()
    subprocess.run([STORESCU, "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port), *map(str, files)],
                   check=True, timeout=TIMEOUT_S, capture_output=True)
    return time.perf_counter() - t0


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_node(files: list[Path], pdu: int, work: Path) -> tuple[float, float]:
    got: list[str] = []
    done = threading.Event()
    spool = work / f"spool-{pdu}"
    cfg = DicomNodeConfig(listen="127.0.0.1:0", max_pdu_size=pdu, keep_hours=0.0)
    with DicomNode(cfg, spool, lambda p, i: got.append(p), lambda i: done.set()) as node:
        assert node.address is not None
        cpu0 = time.process_time()  # this process: the node's threads (the driver only waits)
        seconds = _storescu(node.address[1], "MEDIQA", files)
        done.wait(30)
        cpu = time.process_time() - cpu0
        for path in got:
            node.release(path)
    if len(got) != len(files):
        raise SystemExit(f"our node received {len(got)} of {len(files)}")
    shutil.rmtree(spool, ignore_errors=True)
    return seconds, cpu


@contextlib.contextmanager
def orthanc(work: Path, **extra: object) -> Iterator[tuple[int, int, int]]:
    dicom_port, http_port = _free_port(), _free_port()
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "orthanc.json"
    conf.write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(work / "o-storage"), "IndexDirectory": str(work / "o-index"),
        "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [], "StorageCompression": False, "SaveJobs": False, **extra}))
    with (work / "orthanc.log").open("wb") as log:
        proc = subprocess.Popen(["Orthanc", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            end = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > end or proc.poll() is not None:
                        raise SystemExit("Orthanc did not start: see its log") from None
                    time.sleep(0.2)
            yield dicom_port, http_port, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def run_orthanc(files: list[Path], ports: tuple[int, int, int]) -> tuple[float, float]:
    cpu0 = _proc_cpu(ports[2])
    seconds = _storescu(ports[0], "ORTHANC", files)
    cpu = _proc_cpu(ports[2]) - cpu0
    url = f"http://127.0.0.1:{ports[1]}"
    with urllib.request.urlopen(f"{url}/statistics", timeout=10) as r:
        count = json.loads(r.read())["CountInstances"]
    if count != len(files):
        raise SystemExit(f"Orthanc holds {count} of {len(files)}")
    for study in json.loads(urllib.request.urlopen(f"{url}/studies", timeout=10).read()):
        req = urllib.request.Request(f"{url}/studies/{study}", method="DELETE")
        urllib.request.urlopen(req, timeout=60).close()
    return seconds, cpu


# --- latency: the whole agent behind the node, and Orthanc's stable series ---------------------------------


class _Posts(http.server.BaseHTTPRequestHandler):
    """Records when each POST arrives (Orthanc's Lua callback calls us)."""

    arrivals: list[float] = []

    def do_POST(self) -> None:
        type(self).arrivals.append(time.time())
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def post_listener() -> Iterator[tuple[int, list[float]]]:
    _Posts.arrivals = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Posts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), _Posts.arrivals
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _lua(work: Path, post_port: int) -> Path:
    script = work / "stable.lua"
    script.write_text(f"function OnStableSeries(seriesId, tags, metadata)\n"
                      f"  HttpPost('http://127.0.0.1:{post_port}/stable', seriesId)\nend\n")
    return script


def run_agent(files: list[Path], work: Path, scorer_name: str, quiet: float | None, k: int) -> dict[str, float]:
    """One series through storescu -> NodeFeed -> Agent.run -> result; seconds (epoch differences)."""
    raw: dict[str, object] = {"state_dir": str(work / f"state-{k}"), "scoring": {"scorer": scorer_name}}
    if quiet is not None:
        raw["completion"] = {"quiet_period_s": {"default": quiet, "CT": quiet, "MR": quiet}}
    config = config_from_dict(raw)
    export = work / f"export-{k}"
    export.mkdir()
    results: list[tuple[float, float]] = []
    got = threading.Event()

    def on_result(result: object, result_id: int) -> None:
        results.append((time.time(), float(getattr(result, "processing_ms", 0.0))))
        got.set()

    agent = Agent(config, make_scorer(config), export, on_result=on_result)
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    feed = NodeFeed(agent.events, DicomNodeConfig(listen="127.0.0.1:0"), work / f"state-{k}" / "spool",
                    db=lambda: agent.db)
    try:
        feed.start()
        loop.start()
        assert feed.address is not None
        t0 = time.time()
        wall = _storescu(feed.address[1], "MEDIQA", files)
        if not got.wait(TIMEOUT_S):
            raise SystemExit("the agent gave no result")
        (timing,) = [t for t in feed.associations if t.instances]
    finally:
        feed.stop()
        stop.set()
        loop.join(60)
        agent.close()
    assert timing.last_instance is not None
    done, processing_ms = results[0]
    return {"wall": wall, "released_ms": 1000 * (timing.released - timing.last_instance),
            "gap_ms": 1000 * timing.max_gap_s, "result": done - timing.last_instance,
            "first": timing.last_instance - t0, "processing": processing_ms / 1000}


def run_orthanc_stable(files: list[Path], ports: tuple[int, int, int], arrivals: list[float]) -> dict[str, float]:
    before = len(arrivals)
    wall = _storescu(ports[0], "ORTHANC", files)
    acked = time.time()
    end = time.monotonic() + 60
    while len(arrivals) == before:
        if time.monotonic() > end:
            raise SystemExit("Orthanc's OnStableSeries never called (see its log)")
        time.sleep(0.01)
    stable = arrivals[before] - acked
    url = f"http://127.0.0.1:{ports[1]}"
    for study in json.loads(urllib.request.urlopen(f"{url}/studies", timeout=10).read()):
        req = urllib.request.Request(f"{url}/studies/{study}", method="DELETE")
        urllib.request.urlopen(req, timeout=60).close()
    return {"wall": wall, "stable": stable}


def latency(files: list[Path], work: Path, args: argparse.Namespace, use_orthanc: bool) -> None:
    mine: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        arrivals: list[float] = []
        ports = None
        if use_orthanc:
            post_port, arrivals = stack.enter_context(post_listener())
            ports = stack.enter_context(orthanc(work / "stable", StableAge=1,
                                                LuaScripts=[str(_lua(work, post_port))]))
        for k in range(args.repeat):
            order = ["ours", "orthanc"] if k % 2 == 0 else ["orthanc", "ours"]
            for name in order:
                if name == "ours":
                    mine.append(run_agent(files, work, args.scorer, args.quiet, k))
                elif ports is not None:
                    theirs.append(run_orthanc_stable(files, ports, arrivals))
    load_after = os.getloadavg()
    quiet = f"{args.quiet:g} s" if args.quiet is not None else "default (CT 5 s)"
    print(f"\nlatency: {len(files)} files by storescu, {args.repeat} repeats, scorer {args.scorer}, "
          f"quiet period {quiet}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"{'receiver':<34} {'storescu s':>10} {'last->released ms':>17} {'max gap ms':>10} "
          f"{'last->result s':>14} {'of it scoring s':>15}")
    if mine:
        print(f"{'MedIQA node + agent':<34} {med(mine, 'wall'):10.2f} {med(mine, 'released_ms'):17.1f} "
              f"{med(mine, 'gap_ms'):10.1f} {med(mine, 'result'):14.2f} {med(mine, 'processing'):15.2f}  runs: "
              + " ".join(f"{r['result']:.2f}" for r in mine))
    if theirs:
        print(f"{'Orthanc 1.10, OnStableSeries @1 s':<34} {med(theirs, 'wall'):10.2f} {'':>17} {'':>10} "
              f"{med(theirs, 'stable'):14.2f} {'':>15}  runs: " + " ".join(f"{r['stable']:.2f}" for r in theirs))
    print("last->result: our last instance stored -> on_result; Orthanc: storescu's exit -> OnStableSeries")


def throughput(files: list[Path], work: Path, pdus: list[int], args: argparse.Namespace, use_orthanc: bool) -> None:
    mib = sum(f.stat().st_size for f in files) / 2**20
    times: dict[str, list[tuple[float, float]]] = {f"MedIQA node, PDU {p}": [] for p in pdus}
    load_before = os.getloadavg()
    with orthanc(work) if use_orthanc else contextlib.nullcontext() as ports:
        if use_orthanc:
            times["Orthanc 1.10 (storescu)"] = []
        for k in range(args.repeat):
            order = list(times) if k % 2 == 0 else list(reversed(times))
            for name in order:
                if name.startswith("Orthanc"):
                    assert ports is not None
                    times[name].append(run_orthanc(files, ports))
                else:
                    times[name].append(run_node(files, int(name.rsplit(" ", 1)[1]), work))
    load_after = os.getloadavg()
    print(f"throughput: {len(files)} files, {mib:.0f} MiB, sent by storescu on 127.0.0.1, {args.repeat} repeats, "
          f"{os.cpu_count()} CPUs")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print("wall: storescu start to exit; CPU: the receiving process's user+system seconds in that time")
    print(f"{'receiver':<28} {'median s':>9} {'files/s':>8} {'MiB/s':>7} {'CPU s':>6} {'CPU ms/file':>11}  runs (s)")
    for name, runs in times.items():
        med, cpu = statistics.median(t for t, _ in runs), statistics.median(c for _, c in runs)
        print(f"{name:<28} {med:9.2f} {len(files) / med:8.1f} {mib / med:7.1f} {cpu:6.2f} "
              f"{1000 * cpu / len(files):11.1f}  " + " ".join(f"{t:.2f}" for t, _ in runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pdu", default="16382,262144", help="our node's max PDU sizes to compare")
    ap.add_argument("--no-orthanc", action="store_true")
    ap.add_argument("--no-throughput", action="store_true", help="only the latency table")
    ap.add_argument("--no-latency", action="store_true", help="only the throughput table")
    ap.add_argument("--scorer", default="learned", choices=("learned", "classical"), help="the agent's scorer")
    ap.add_argument("--quiet", type=float, help="the agent's quiet period in s (default: the config's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if dcmtk_storescu() is None:
        raise SystemExit("dcmtk's storescu not found: apt-get install dcmtk")
    use_orthanc = not args.no_orthanc and shutil.which("Orthanc") is not None
    pdus = [int(p) for p in args.pdu.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        work = Path(tmp)
        write_phantom_ct(work / "ct", noise_hu=4.0, seed=0, slices=args.slices, size=args.size)
        files = sorted((work / "ct").glob("*.dcm"))
        if not args.no_throughput:
            throughput(files, work, pdus, args, use_orthanc)
        if not args.no_latency:
            latency(files, work, args, use_orthanc)


if __name__ == "__main__":
    main()
