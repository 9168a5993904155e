"""The sd_notify client against a real AF_UNIX datagram socket (a path in a tmp dir, and an abstract name)."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediqa.agent.report import systemd_notify as sd

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or sys.platform == "win32",
                                reason="the notify protocol is AF_UNIX datagrams (Linux/systemd)")


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's; short path (sun_path is 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="mq-sd-", dir="/tmp"))
    path = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        folder.rmdir()


def _received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode("utf-8").split("\n")


def test_ready_watchdog_status_stopping_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path}
    assert sd.ready(environ=env)
    assert _received(sock) == ["READY=1"]
    assert sd.ready("scorer learned on onnxruntime-cpu\nready", environ=env)
    assert _received(sock) == ["READY=1", "STATUS=scorer learned on onnxruntime-cpu ready"]
    assert sd.watchdog(environ=env)
    assert _received(sock) == ["WATCHDOG=1"]
    assert sd.status("3 series open,  1 retake", environ=env)
    assert _received(sock) == ["STATUS=3 series open, 1 retake"]  # one line, whitespace folded
    assert sd.stopping(environ=env)
    assert _received(sock) == ["STOPPING=1"]
    assert sd.extend_timeout(1.5, environ=env)
    assert _received(sock) == ["EXTEND_TIMEOUT_USEC=1500000"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_abstract_socket_written_with_an_at_sign() -> None:
    name = f"mediqa-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        env = {"NOTIFY_SOCKET": "@" + name}
        assert sd.socket_address(env) == "\0" + name
        assert sd.ready(environ=env)
        assert _received(sock) == ["READY=1"]


def test_no_ops_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd.socket_address() is None
    assert not sd.ready()
    assert not sd.watchdog()
    assert not sd.status("x")
    assert not sd.stopping()
    # Address kinds this client does not speak are off too, not errors.
    assert sd.socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert sd.socket_address({"NOTIFY_SOCKET": "@"}) is None


def test_a_missing_socket_is_a_false_not_an_exception(tmp_path: Path) -> None:
    assert not sd.watchdog(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_assignments_are_single_lines(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    with pytest.raises(ValueError):
        sd.notify("READY=1\nSTATUS=x", environ={"NOTIFY_SOCKET": path})
    with pytest.raises(ValueError):
        sd.notify("READY", environ={"NOTIFY_SOCKET": path})


def test_watchdog_interval_from_watchdog_usec() -> None:
    pid = str(os.getpid())
    assert sd.watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert sd.watchdog_interval_s({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": pid}) == 0.5
    assert sd.watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # not ours
    assert sd.watchdog_interval_s({}) is None
    assert sd.watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert sd.watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None


def test_heartbeat_sends_at_most_every_half_interval(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    now = [100.0]
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}
    beat = sd.Heartbeat.from_env(env, clock=lambda: now[0])
    assert beat.enabled and beat.period_s == 5.0
    assert beat.beat()  # the first beat goes out at once
    assert _received(sock) == ["WATCHDOG=1"]
    now[0] += 4.9
    assert not beat.beat()
    now[0] += 0.1
    assert beat.beat()
    assert _received(sock) == ["WATCHDOG=1"]


def test_heartbeat_is_inert_without_a_watchdog() -> None:
    beat = sd.Heartbeat.from_env({"NOTIFY_SOCKET": "/nonexistent"})
    assert not beat.enabled
    assert not beat.beat()
