#!/usr/bin/env python3
"""Benchmark (not a timed test): instances/s our DICOM node receives on loopback, vs Orthanc, same run.

One generated CT series (``write_phantom_ct``, 300 slices of 512x512 by default) is sent by dcmtk's
``storescu`` (one association, default proposals) to each receiver in turn, ``--repeat`` times,
alternating the order. Both receivers make each instance durable before answering (our node: write,
fsync, rename, fsync the folder; Orthanc: its default ``SyncStorageArea``). Our node runs in this
process with the given ``--pdu`` sizes (its max receive PDU); Orthanc (Debian package ``orthanc``)
runs from a temporary config on free ports, with its storage in a temp folder, and is stopped after.
Times are storescu's wall time, first byte to exit. The load average is printed with the table:
this machine is shared, so compare the rows of one run, not runs.

    python scripts/bench_dicom_node.py                       # 300 slices, 3 repeats, PDU 16382 and 262144
    python scripts/bench_dicom_node.py --slices 100 --repeat 1 --pdu 262144 --no-orthanc
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

from mediqa.agent.samples import write_phantom_ct  # noqa: E402
from mediqa.agent.watch.dicom_node import DicomNode, DicomNodeConfig  # noqa: E402

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
def orthanc(work: Path) -> Iterator[tuple[int, int, int]]:
    dicom_port, http_port = _free_port(), _free_port()
    conf = work / "orthanc.json"
    conf.write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(work / "o-storage"), "IndexDirectory": str(work / "o-index"),
        "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [], "StorageCompression": False, "SaveJobs": False}))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pdu", default="16382,262144", help="our node's max PDU sizes to compare")
    ap.add_argument("--no-orthanc", action="store_true")
    args = ap.parse_args()
    if dcmtk_storescu() is None:
        raise SystemExit("dcmtk's storescu not found: apt-get install dcmtk")
    use_orthanc = not args.no_orthanc and shutil.which("Orthanc") is not None
    pdus = [int(p) for p in args.pdu.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        work = Path(tmp)
        write_phantom_ct(work / "ct", noise_hu=4.0, seed=0, slices=args.slices, size=args.size)
        files = sorted((work / "ct").glob("*.dcm"))
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
    print(f"{len(files)} files, {mib:.0f} MiB, sent by storescu on 127.0.0.1, {args.repeat} repeats, "
          f"{os.cpu_count()} CPUs")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print("wall: storescu start to exit; CPU: the receiving process's user+system seconds in that time")
    print(f"{'receiver':<28} {'median s':>9} {'files/s':>8} {'MiB/s':>7} {'CPU s':>6} {'CPU ms/file':>11}  runs (s)")
    for name, runs in times.items():
        med, cpu = statistics.median(t for t, _ in runs), statistics.median(c for _, c in runs)
        print(f"{name:<28} {med:9.2f} {len(files) / med:8.1f} {mib / med:7.1f} {cpu:6.2f} "
              f"{1000 * cpu / len(files):11.1f}  " + " ".join(f"{t:.2f}" for t, _ in runs))


if __name__ == "__main__":
    main()
