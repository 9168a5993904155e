"""The DICOM node feeding a real agent: dcmtk's echoscu / storescu send, the agent (classical scorer) scores.

Everything on loopback with timeouts; the node listens on port 0; every thread and server is stopped by
its test (conftest checks threads). The node's own behaviour (refusals, spool, kill -9 while writing)
is in test_dicom_node.py; here: what the agent makes of what the node received.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from dicom_peers import agent_config, echoscu, running_site, storescu

from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.agent.watch.dicom_node import DicomNodeConfig
from mediqa.agent.watch.node_feed import NodeFeed
from mediqa.errors import ConfigError


def _spooled(spool: Path) -> list[Path]:
    return sorted(p for p in spool.rglob("*") if p.is_file())


def _wait(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


@pytest.mark.slow
def test_received_series_are_scored_ok_and_retake_echo_answers_unknown_ae_refused(tmp_path, clean, noisy, caplog):
    caplog.set_level(logging.INFO, logger="mediqa")
    with running_site(tmp_path, node={"allowed_calling_aes": ("CT01",)}) as site:
        port = site.feed.address[1]
        echo = echoscu(port)
        assert echo.returncode == 0, echo.stderr
        intruder = storescu(port, clean[:1], "INTRUDER")
        assert intruder.returncode != 0 and "Calling AE Title Not Recognized" in intruder.stderr + intruder.stdout
        for files in (clean, noisy):
            sent = storescu(port, files)
            assert sent.returncode == 0, sent.stderr
        results = site.wait_results(2)
        timings = list(site.feed.associations)
    decisions = {r.series_uid: (r.decision, r.n_instances) for r in results}
    assert decisions == {_uid(clean[0]): ("ok", 12), _uid(noisy[0]): ("retake", 12)}
    assert len(_spooled(site.state / "spool")) == 24  # keep_hours 24 (default): kept for inspection
    stores = [t for t in timings if t.instances]
    assert [t.instances for t in stores] == [12, 12] and len(timings) == 3  # the echo, two stores (refused: none)
    assert all(t.released >= t.last_instance >= t.first_instance for t in stores)
    assert "PHANTOM" not in caplog.text
    assert [m for m in caplog.messages if "refused" in m and "INTRUDER" in m]


@pytest.mark.slow
def test_keep_hours_0_deletes_received_files_once_their_series_is_scored(tmp_path, clean):
    with running_site(tmp_path, node={"keep_hours": 0.0}) as site:
        assert storescu(site.feed.address[1], clean).returncode == 0
        (result,) = site.wait_results(1)
        _wait(lambda: not _spooled(site.state / "spool"), what="the spool to be emptied")
        assert site.feed.node.used_bytes == 0
    assert result.decision == "ok" and result.n_instances == 12
    assert list((site.state / "spool").iterdir()) == []  # the association's folder went too


@pytest.mark.slow
def test_files_in_the_spool_at_start_are_offered_and_prune_spares_what_is_not_scored(tmp_path, clean, noisy):
    """Deterministic: the agent is stepped with a fake clock; the node is real."""
    now = [1000.0]
    state, export, spool = tmp_path / "state", tmp_path / "export", tmp_path / "state" / "spool"
    export.mkdir()
    # Before the start: a file received by an earlier run, never indexed (the process died first).
    early = spool / "20240101T000000-0badcafe" / "a.dcm"
    early.parent.mkdir(parents=True)
    shutil.copy(noisy[0], early)
    agent = Agent(agent_config(state), ClassicalScorer(), export, clock=lambda: now[0])
    try:
        feed = NodeFeed(agent.events, DicomNodeConfig(listen="127.0.0.1:0", keep_hours=1.0), spool,
                        db=lambda: agent.db, housekeeping_s=0)
        with feed:
            taken = []
            while not agent.events.empty():  # a look, then put back in order
                taken.append(agent.events.get_nowait())
            for event in taken:
                agent.events.put(event)
            assert [e.path for e in taken] == [str(early)]
            assert storescu(feed.address[1], clean).returncode == 0
            _wait(lambda: len(feed.associations) == 1, what="the association's end")
            agent.step()
            now[0] += 2.0
            agent.step()
            states = {st.series_uid: st.state for st in agent.tracker.all_states()}
            assert states == {_uid(clean[0]): "scored", _uid(noisy[0]): "scored"}
            late = spool / "20240101T000001-0ddba11a" / "b.dcm"  # arrived, not indexed yet
            late.parent.mkdir()
            shutil.copy(noisy[1], late)
            report = feed.housekeep(time.time() + 3601)  # all old enough: only what is done goes
            assert report.deleted == 13 and report.offered == 1
            assert _spooled(spool) == [late]
            assert agent.events.get_nowait().path == str(late)
            assert feed.housekeep(time.time()).deleted == 0
    finally:
        agent.close()


def test_a_spool_inside_the_export_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError):
        NodeFeed(queue.Queue(), DicomNodeConfig(listen="127.0.0.1:0"), tmp_path / "export" / "spool",
                 db=lambda: None, export_folder=tmp_path / "export")  # type: ignore[arg-type, return-value]


KILLED_RECEIVER = r"""
import sys, time
from pathlib import Path
from mediqa.agent.config import config_from_dict
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent
from mediqa.agent.watch.dicom_node import DicomNodeConfig
from mediqa.agent.watch.node_feed import NodeFeed

tmp = Path(sys.argv[1])
config = config_from_dict({"state_dir": str(tmp / "state"), "scoring": {"scorer": "classical"}})
agent = Agent(config, ClassicalScorer(), tmp / "export")  # never run: the events stay in its queue
feed = NodeFeed(agent.events, DicomNodeConfig(listen="127.0.0.1:0"), tmp / "state" / "spool", db=lambda: agent.db)
feed.start()
print(feed.address[1], flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_an_acknowledged_instance_survives_kill_9_and_is_indexed_and_scored_after_the_restart(tmp_path, clean):
    (tmp_path / "export").mkdir()
    child = subprocess.Popen([sys.executable, "-c", KILLED_RECEIVER, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        sent = storescu(port, clean)
        assert sent.returncode == 0, sent.stderr  # every instance acknowledged (0x0000)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=20) == -9
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert len(_spooled(tmp_path / "state" / "spool")) == len(clean)
    with running_site(tmp_path, node={}) as site:
        (result,) = site.wait_results(1)
    assert result.n_instances == len(clean) and result.decision == "ok"
