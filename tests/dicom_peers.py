"""Real DICOM peers for tests, all on loopback: dcmtk's tools, dcmtk's storescp and Orthanc.

Every peer is started by its test on a free port (bound to port 0 first, or given) in a temp folder,
with a timeout on every wait, and stopped after (terminate, wait, kill). A missing tool skips the test
with the Debian package to install.

    with storescp(tmp_path / "received", port=None, aet="PACS") as (port, folder): ...
    with orthanc(tmp_path) as peer: peer.dicom_port, peer.http_port, peer.get("/studies")
    storescu(port, files, aet="CT01", aec="MEDIQA"); echoscu(port)

And our own stack, running: ``running_site(tmp_path, node={...}, output=DicomOutputConfig(...))`` runs a
real ``Agent`` (classical scorer, quiet period 1 s) in a thread, fed by a ``NodeFeed`` on 127.0.0.1:0,
with an ``SrOutbox`` when ``output`` is given, and stops all of them after.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 20.0
PEER_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = START_TIMEOUT_S) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, "the peer exited at start"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {deadline_s} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@functools.cache
def dcmtk_path(name: str) -> str | None:
    """dcmtk's ``name`` on PATH: pynetdicom installs Python apps of the same names (storescu...) in the venv."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which(name, path=folder) if folder else None
        if path is None:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "$dcmtk:" in out.stdout + out.stderr:
            return path
    return None


def tool(name: str) -> str:
    """dcmtk's ``name``, or skip the test."""
    path = dcmtk_path(name)
    if path is None:
        pytest.skip(f"dcmtk's {name} not found on PATH (install the Debian package 'dcmtk')")
    return path


def binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found on PATH (install the Debian package '{package}')")
    return path


def storescu(port: int, files: list[Path], aet: str = "CT01", aec: str = "MEDIQA",
             *extra: str) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu: ``files`` in one association to 127.0.0.1:``port``."""
    cmd = [tool("storescu"), "-aet", aet, "-aec", aec, "-to", "10", "-ta", "10", "-td", "10", *extra,
           "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=PEER_TIMEOUT_S)


def echoscu(port: int, aet: str = "CT01", aec: str = "MEDIQA") -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("echoscu"), "-aet", aet, "-aec", aec, "-to", "10", "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=PEER_TIMEOUT_S)


@contextlib.contextmanager
def storescp(out: Path, port: int | None = None, aet: str = "PACS") -> Iterator[tuple[int, Path]]:
    """dcmtk's storescp writing what it receives to ``out``; yields (port, out)."""
    path = tool("storescp")
    port = free_port() if port is None else port
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([path, "-aet", aet, "-od", str(out), "-ta", "10", "-td", "10", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield port, out
    finally:
        stop(proc)


@dataclass(frozen=True)
class OrthancPeer:
    dicom_port: int
    http_port: int
    aet: str

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())


@contextlib.contextmanager
def orthanc(work: Path, aet: str = "ORTHANC", **extra: Any) -> Iterator[OrthancPeer]:
    """Orthanc from a temporary config (loopback only, no authentication, storage under ``work``)."""
    path = binary("Orthanc", "orthanc")
    dicom_port, http_port = free_port(), free_port()
    work.mkdir(parents=True, exist_ok=True)
    config = {"Name": "mediqa-test", "StorageDirectory": str(work / "storage"),
              "IndexDirectory": str(work / "index"), "DicomAet": aet, "DicomPort": dicom_port,
              "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
              "DicomCheckCalledAet": True, "Plugins": [], "StorageCompression": False, "SaveJobs": False, **extra}
    (work / "orthanc.json").write_text(json.dumps(config))
    with (work / "orthanc.log").open("wb") as logf:
        proc = subprocess.Popen([path, str(work / "orthanc.json")], stdout=logf, stderr=subprocess.STDOUT)
        try:
            wait_port(http_port, proc)
            wait_port(dicom_port, proc)
            yield OrthancPeer(dicom_port, http_port, aet)
        finally:
            stop(proc)


# --- our own stack, running: a real Agent (classical scorer) fed by the node, with the SR outbox -------


@dataclass
class Site:
    """A running agent with its DICOM node (``feed``) and SR outbox; ``results`` as ``on_result`` saw them."""

    state: Path
    export: Path
    agent: Any
    feed: Any
    outbox: Any
    results: list[tuple[Any, int]]
    changed: threading.Condition

    def wait_results(self, n: int, timeout_s: float = 60.0) -> list[Any]:
        end = time.monotonic() + timeout_s
        with self.changed:
            while len(self.results) < n:
                left = end - time.monotonic()
                assert left > 0, f"{len(self.results)} of {n} results after {timeout_s} s"
                self.changed.wait(left)
            return [r for r, _ in self.results]


def agent_config(state: Path, quiet_s: float = 1.0, **extra: Any) -> Any:
    from mediqa.agent.config import config_from_dict

    raw = {"state_dir": str(state), "scoring": {"scorer": "classical"},
           "completion": {"quiet_period_s": {"default": quiet_s}}, "watch": {"file_stable_s": 0.0}, **extra}
    return config_from_dict(raw)


@contextlib.contextmanager
def running_site(tmp: Path, node: dict[str, Any] | None = None, output: Any = None, *, quiet_s: float = 1.0,
                 housekeeping_s: float = 0.5) -> Iterator[Site]:
    """Agent.run(stop, watch=True) in a thread, the node on 127.0.0.1:0 (``node``: DicomNodeConfig fields;
    None: no node), the SR outbox when ``output`` (a DicomOutputConfig) is given; all stopped after."""
    from mediqa.agent.scoring.classical import ClassicalScorer
    from mediqa.agent.service import Agent
    from mediqa.agent.watch.dicom_node import DicomNodeConfig
    from mediqa.agent.watch.node_feed import NodeFeed

    state, export = tmp / "state", tmp / "export"
    export.mkdir(parents=True, exist_ok=True)
    results: list[tuple[Any, int]] = []
    changed = threading.Condition()
    holder: dict[str, Any] = {}

    def on_result(result: Any, result_id: int) -> None:
        with changed:
            results.append((result, result_id))
            changed.notify_all()
        if holder.get("outbox") is not None:
            holder["outbox"].on_result(result, result_id)

    agent = Agent(agent_config(state, quiet_s), ClassicalScorer(), export, on_result=on_result)
    if output is not None:
        from mediqa.agent.report.sr_outbox import SrOutbox
    outbox = holder["outbox"] = None if output is None else SrOutbox(
        output, state, db=lambda: agent.db, records=lambda uid: agent.tracker.records(uid), poll_s=0.2)
    feed = None if node is None else NodeFeed(
        agent.events, DicomNodeConfig(**{"listen": "127.0.0.1:0", **node}), state / "spool", db=lambda: agent.db,
        keep=None if outbox is None else outbox.needs_files, housekeeping_s=housekeeping_s)
    stop_event = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop_event,), kwargs={"watch": True, "tick_s": 0.05},
                            name="test-agent")
    try:
        if outbox is not None:
            outbox.start()
        if feed is not None:
            feed.start()
        loop.start()
        yield Site(state, export, agent, feed, outbox, results, changed)
    finally:
        if feed is not None:
            feed.stop()
        stop_event.set()
        if loop.is_alive():
            loop.join(30)
        if outbox is not None:
            outbox.stop()
        agent.close()


def received_files(folder: Path) -> list[Path]:
    """What storescp wrote to ``folder`` (its temp files, if any, are dot files)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
