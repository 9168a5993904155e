"""The agent's Prometheus metrics, scraped from the console's /metrics over HTTP and parsed."""

from __future__ import annotations

import http.client
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mediqa.agent.report.metrics import LATENCY_BUCKETS, AgentMetrics, file_sha256
from mediqa.agent.report.web import AgentStatus, ConsoleConfig, start_console
from mediqa.agent.state.db import open_state


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scrape(port: int) -> dict[str, list]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Host": f"127.0.0.1:{port}"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain")
        text = resp.read().decode()
    finally:
        conn.close()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples, name, **labels):
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def test_metrics_over_http_carry_site_and_station(tmp_path: Path):
    clock = Clock()
    metrics = AgentMetrics(site="north", station="CT 2", clock=clock)
    metrics.scored("ok", "CT", 3.0)
    metrics.scored("retake", "CT", 7.5)
    metrics.scored("unscored", "MR", None)
    metrics.indexed(28)
    metrics.skipped("not_dicom")
    metrics.skipped("internal: KeyError('0010,0010 DOE^JOHN')")  # bounded: the kind only, no header text
    metrics.queue(4)
    metrics.file_event(990.0)
    metrics.backend("tensorrt")
    metrics.backend("onnxruntime-cpu")  # the one in use, not every one ever used
    metrics.model("mediqa-edge", "3", "ab" * 32)
    state = AgentStatus(folder="export", backend="onnxruntime-cpu", queue=4)
    open_state(tmp_path).close()  # the agent's state database, as the console finds it
    server = start_console(ConsoleConfig(listen="127.0.0.1:0"), tmp_path, metrics=metrics, status=lambda: state)
    assert server is not None
    try:
        got = _scrape(server.port)
        const = {"site": "north", "station": "CT_2"}
        scored = got["mediqa_series_scored"]
        assert _value(scored, "mediqa_series_scored_total", decision="retake", modality="CT", **const) == 1
        assert _value(scored, "mediqa_series_scored_total", decision="unscored", modality="MR") == 1
        assert _value(got["mediqa_alerts"], "mediqa_alerts_total", modality="CT", **const) == 1
        assert _value(got["mediqa_files_indexed"], "mediqa_files_indexed_total", **const) == 28
        skipped = got["mediqa_files_skipped"]
        assert {s.labels["reason"] for s in skipped if s.name.endswith("_total")} == {"not_dicom", "internal"}
        latency = got["mediqa_last_file_to_result_seconds"]
        buckets = {s.labels["le"]: s.value for s in latency if s.name.endswith("_bucket")}
        assert buckets["5.0"] == 1 and buckets["10.0"] == 2 and len(buckets) == len(LATENCY_BUCKETS) + 1
        assert _value(got["mediqa_queue_files"], "mediqa_queue_files") == 4
        assert [s.labels["backend"] for s in got["mediqa_backend_info"]] == ["onnxruntime-cpu"]
        (model,) = got["mediqa_model_info"]
        assert model.value == 1 and model.labels["sha256"] == "ab" * 32 and model.labels["version"] == "3"
        assert _value(got["mediqa_last_file_event_age_seconds"], "mediqa_last_file_event_age_seconds") == 10.0
        clock.now = 1060.0  # the age is computed when scraped
        assert _value(_scrape(server.port)["mediqa_last_file_event_age_seconds"],
                      "mediqa_last_file_event_age_seconds") == 70.0
        assert _value(got["mediqa_degraded"], "mediqa_degraded") == 0
        every = [s for samples in got.values() for s in samples]
        assert all(s.labels.get("site") == "north" and s.labels.get("station") == "CT_2" for s in every)
    finally:
        server.stop()


def test_degraded_and_the_age_before_any_file(tmp_path: Path):
    metrics = AgentMetrics()
    degraded = AgentStatus(reasons=("the state database cannot be written",))
    server = start_console(ConsoleConfig(listen="127.0.0.1:0"), tmp_path, metrics=metrics, status=lambda: degraded)
    assert server is not None
    try:
        got = _scrape(server.port)
        assert _value(got["mediqa_degraded"], "mediqa_degraded") == 1  # refreshed from the status at scrape time
        age = _value(got["mediqa_last_file_event_age_seconds"], "mediqa_last_file_event_age_seconds")
        assert age != age  # NaN: no file event yet
    finally:
        server.stop()
    assert AgentMetrics().registry is not AgentMetrics().registry  # never the process-global registry


def test_file_sha256(tmp_path: Path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
