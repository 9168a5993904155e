"""`mediqa watch` under systemd: READY=1 once the scorer is up (Type=notify), WATCHDOG=1 from the loop,
STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mediqa.agent.samples import write_phantom_ct


def _messages(sock: socket.socket, until: str, timeout_s: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    sock.settimeout(0.2)
    while time.monotonic() < deadline and not any(until in m for m in got):
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


@pytest.mark.slow
def test_watch_tells_systemd_it_is_ready_and_stopping(tmp_path):
    export = tmp_path / "export"
    write_phantom_ct(export / "a", noise_hu=4.0, seed=0, slices=4, size=96)
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")  # WatchdogSec=1 s: ping every 0.5 s
    proc = subprocess.Popen([sys.executable, "-m", "mediqa.cli.main", "watch", "--folder", str(export),
                             "--state-dir", str(tmp_path / "state"), "--scorer", "classical"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = _messages(sock, "READY=1", 60)
        assert any("READY=1" in m for m in ready), ready
        pings = _messages(sock, "WATCHDOG=1", 10)  # from the loop itself: a stuck loop stops pinging
        assert any("WATCHDOG=1" in m for m in pings), pings
        proc.send_signal(signal.SIGTERM)
        stopping = _messages(sock, "STOPPING=1", 20)
        assert any("STOPPING=1" in m for m in stopping), stopping
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
