"""``mediqa doctor`` asks a running service how it is, on loopback: /healthz and /metrics."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import mediqa.cli.doctor as doctor
from mediqa.agent.config import AgentConfig
from mediqa.cli.main import main

METRICS = ('# TYPE mediqa_series_scored_total counter\n'
           'mediqa_series_scored_total{modality="CT"} 3\nmediqa_series_scored_total{modality="MR"} 4\n')


class _Service(BaseHTTPRequestHandler):
    health: tuple[int, dict] = (200, {"status": "ok"})
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.path == "/healthz":
            code, body = type(self).health
            data, kind = json.dumps(body).encode(), "application/json"
        elif self.path == "/metrics":
            code, data, kind = 200, METRICS.encode(), "text/plain; version=0.0.4"
        else:
            code, data, kind = 404, b"", "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def service():
    """A stand-in for the agent's console on 127.0.0.1:<free port>; yields (address, handler class)."""
    handler = type("Handler", (_Service,), {"health": (200, {"status": "ok"}), "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _doctor(tmp_path, listen, monkeypatch, capsys):
    (tmp_path / "export").mkdir(exist_ok=True)
    argv = ["doctor", "--folder", str(tmp_path / "export"), "--state-dir", str(tmp_path / "s"),
            "--scorer", "classical"]
    if "console" in AgentConfig.__dataclass_fields__:
        argv += ["--set", f"console.listen={listen}"]
    else:  # before the console block exists in the config: the default address
        monkeypatch.setattr(doctor, "DEFAULT_LISTEN", listen)
    rc = main(argv)
    return rc, capsys.readouterr().out


@pytest.mark.slow
def test_a_healthy_service_and_its_metrics(tmp_path, service, monkeypatch, capsys):
    listen, handler = service
    rc, out = _doctor(tmp_path, listen, monkeypatch, capsys)
    assert rc == 0, out
    line = next(x for x in out.splitlines() if " service " in x)
    assert line.lstrip().startswith("ok") and "running" in line and listen in line
    assert "7 series scored" in out
    assert handler.seen[:2] == ["/healthz", "/metrics"]


@pytest.mark.slow
def test_a_degraded_service_shows_its_reasons(tmp_path, service, monkeypatch, capsys):
    listen, handler = service
    handler.health = (503, {"status": "degraded", "reasons": ["state database not writable", "disk full"]})
    rc, out = _doctor(tmp_path, listen, monkeypatch, capsys)
    line = next(x for x in out.splitlines() if " service " in x)
    assert rc == 1 and "FAIL" in line and "degraded" in line
    assert "state database not writable; disk full" in line


@pytest.mark.slow
def test_no_service_is_not_running(tmp_path, monkeypatch, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rc, out = _doctor(tmp_path, f"127.0.0.1:{port}", monkeypatch, capsys)
    line = next(x for x in out.splitlines() if " service " in x)
    assert rc == 0 and "warn" in line and "not running" in line


def test_doctor_never_asks_beyond_loopback(tmp_path, monkeypatch, capsys):
    asked: list[str] = []
    monkeypatch.setattr(doctor, "_fetch", lambda url, timeout: asked.append(url) or (200, b"{}"))
    rc, out = _doctor(tmp_path, "10.1.2.3:8765", monkeypatch, capsys)
    assert asked == [] and "not a loopback address" in out


def test_a_wildcard_listener_is_asked_on_loopback(tmp_path, monkeypatch, capsys):
    asked: list[str] = []

    def fetch(url, timeout):
        asked.append(url)
        return (200, b'{"status": "ok"}') if url.endswith("/healthz") else (200, METRICS.encode())

    monkeypatch.setattr(doctor, "_fetch", fetch)
    _doctor(tmp_path, "0.0.0.0:8765", monkeypatch, capsys)
    assert asked == ["http://127.0.0.1:8765/healthz", "http://127.0.0.1:8765/metrics"]
