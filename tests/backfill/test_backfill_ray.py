"""``mediqa backfill --ray ADDRESS`` on a real Ray cluster that this test starts on 127.0.0.1 (``ray start
--head``, 2 CPUs): results equal to ``mediqa score --json``, a killed actor's series retried with nothing lost
or doubled, and a re-run that skips every finished series. Every process of the cluster is stopped after."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backfill_support import children, cmdline, kill, mediqa, parts, rows, start_mediqa, wait_for_parts
from conftest import N_SERIES
from test_backfill_local import assert_same_as_score

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")

# Ray gives a node the machine's address unless told this (then 127.0.0.1): the cluster stays on loopback.
# Its token authentication (on by default) with a token of this test run, given to the head and to the CLI.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _cluster_pids(temp_dir: str) -> list[int]:
    roots = [int(p) for p in os.listdir("/proc") if p.isdigit() and temp_dir in cmdline(int(p))]
    return sorted({*roots, *(c for r in roots for c in children(r))})


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    temp_dir = tempfile.mkdtemp(prefix="mqray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray = Path(sys.executable).with_name("ray")
    with socket.socket() as probe:  # a free port for the head (with RAY_ENV, ray start prints no address)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = subprocess.run([str(ray), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                              "--temp-dir", temp_dir], capture_output=True, text=True, timeout=180,
                             env={**os.environ, **RAY_ENV}, check=False)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        assert "Local node IP: 127.0.0.1" in started.stdout + started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _cluster_pids(temp_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(2)
        assert _cluster_pids(temp_dir) == [], "a Ray process outlived the test"
        shutil.rmtree(temp_dir, ignore_errors=True)  # the session's logs and sockets


def _actors(temp_dir_pids: list[int]) -> list[int]:
    return [p for p in temp_dir_pids if "SeriesScorer" in cmdline(p)]


def test_ray_backfill_equals_score_survives_a_killed_actor_and_resumes(archive: Path, reference, ray_address: str,
                                                                       tmp_path: Path):
    out = tmp_path / "bf"
    args = ["backfill", str(archive), "--out", str(out), "--ray", ray_address, "--workers", "2"]
    proc = start_mediqa(*args, "--flush-every", "1", "--no-summary", env=RAY_ENV)
    try:
        wait_for_parts(out, 2, proc)
        raylets = [int(p) for p in os.listdir("/proc") if p.isdigit() and "raylet" in cmdline(int(p))
                   and "mqray-" in cmdline(int(p))]
        actors = _actors([c for r in raylets for c in children(r)])
        assert actors, "no scoring actor to kill"
        kill(actors[0])
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        kill(proc.pid)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Ray cluster at 127.0.0.1:" in stderr
    assert_same_as_score(rows(out), reference)
    before = parts(out)
    again = mediqa(*args, env=RAY_ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{N_SERIES} already done" in again.stdout
    assert parts(out) == before
    assert (out / "summary.md").is_file()


def _local_raylets() -> list[int]:
    """raylet processes of instances started without our temp dir (``--ray local`` uses Ray's default)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and "raylet" in cmdline(int(p))
            and "mqray-" not in cmdline(int(p))]


def test_ray_local_starts_an_instance_on_loopback_scores_and_stops_it(tmp_path: Path):
    from backfill_support import make_archive, score_json

    assert _local_raylets() == [], "another local Ray instance is running"
    archive = make_archive(tmp_path / "archive", 4, slices=4)
    reference = score_json(archive)
    out = tmp_path / "bf"
    done = mediqa("backfill", str(archive), "--out", str(out), "--ray", "local", "--workers", "1", "--no-summary",
                  env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a local Ray instance, 1 actor(s)" in done.stderr
    assert_same_as_score(rows(out), reference)
    assert _local_raylets() == [], "--ray local left its instance running"
