"""A real Prometheus (Debian's), started on loopback with a temporary config and the shipped rules, scrapes two
agents' /metrics (the agent's own console listener on two loopback ports): both are up, their series carry
site, station and modality, the recording rules evaluate, every dashboard query runs, and an agent that
stops is seen down (its alert pending). Prometheus and both listeners are stopped after."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grafana_support import COMMITTED, REPO, concrete, panel_queries

from mediqa.agent.config_fleet import FleetConfig
from mediqa.agent.report.metrics import AgentMetrics
from mediqa.agent.report.web import AgentStatus, ConsoleConfig, start_console
from mediqa.agent.state.db import open_state

pytestmark = pytest.mark.slow
PROMETHEUS = shutil.which("prometheus")
RULES = REPO / "packaging" / "prometheus" / "mediqa-rules.yml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agent(tmp: Path, site: str, station: str, backend: str) -> Any:
    metrics = AgentMetrics(site=site, station=station, fleet=FleetConfig(alert_rate_band=(0.01, 0.2)))
    metrics.backend(backend)
    for i in range(6):
        metrics.scored("retake" if i == 0 else "ok", "CT" if station.startswith("CT") else "MR", 2.0 + i,
                       score=1.2 if i == 0 else 3.4, backend=backend)
    metrics.indexed(120)
    metrics.file_event()
    state = tmp / station
    state.mkdir()
    open_state(state).close()
    server = start_console(ConsoleConfig(listen="127.0.0.1:0"), state, metrics=metrics,
                           status=lambda: AgentStatus(folder="export", backend=backend))
    assert server is not None
    return server


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
            return json.loads(resp.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def wait(self, expr: str, ok: Any, limit_s: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + limit_s  # a bound on a broken setup, not a speed assertion
        while True:
            try:
                result = self.query(expr)
                if ok(result):
                    return result
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"never true: {expr}"
            time.sleep(0.5)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Prom, list[Any]]]:
    if PROMETHEUS is None:
        pytest.skip("prometheus missing: `make system-deps` (Debian package prometheus)")
    agents = [_agent(tmp_path, "north", "CT1", "tensorrt"), _agent(tmp_path, "south", "MR1", "onnxruntime-cpu")]
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "mediqa", "static_configs": [
            {"targets": [f"127.0.0.1:{a.port}" for a in agents]}]}],
    }))
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed after Prometheus stops
    proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield Prom(port), agents
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        for a in agents:
            a.stop()


def test_prometheus_scrapes_two_agents_evaluates_the_rules_and_runs_the_dashboard(fleet):
    prom, agents = fleet
    up = prom.wait('up{job="mediqa"}', lambda r: len(r) == 2 and all(s["value"][1] == "1" for s in r))
    assert {s["metric"]["instance"] for s in up} == {f"127.0.0.1:{a.port}" for a in agents}
    scored = prom.query('mediqa_series_scored_total{decision="ok"}')
    assert {(s["metric"]["site"], s["metric"]["station"], s["metric"]["modality"]) for s in scored} == {
        ("north", "CT1", "CT"), ("south", "MR1", "MR")}
    gpu = {s["metric"]["station"]: s["value"][1] for s in prom.query("mediqa_backend_gpu")}
    assert gpu == {"CT1": "1", "MR1": "0"}
    # the recording rules need two scrapes of a counter: wait for them to appear for both stations
    prom.wait("mediqa:series_scored:increase1d", lambda r: len(r) == 2)
    prom.wait("mediqa:series_score:median1d", lambda r: len(r) == 2)
    rules = prom.get("/api/v1/rules")["data"]["groups"]
    assert [g["name"] for g in rules] == ["mediqa"]
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
    for _title, expr in panel_queries(json.loads(COMMITTED.read_text())):
        prom.query(concrete(expr))  # status success: the dashboard's PromQL parses and runs here
    agents[1].stop()  # the MR agent goes away: seen down, its alert pending (it fires after 5 minutes)
    prom.wait(f'up{{job="mediqa", instance="127.0.0.1:{agents[1].port}"}} == 0', lambda r: len(r) == 1)
    pending = prom.wait('ALERTS{alertname="MediqaAgentDown"}', lambda r: len(r) == 1)
    assert pending[0]["metric"]["alertstate"] == "pending"
    assert pending[0]["metric"]["instance"] == f"127.0.0.1:{agents[1].port}"
