"""The service's /metrics and /healthz, scraped over HTTP while the real agent scores a generated series."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mediqa.agent.config import config_from_dict
from mediqa.agent.runtime import Runtime
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _samples(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


@pytest.mark.slow
def test_metrics_and_health_follow_the_loop(tmp_path):
    write_phantom_ct(tmp_path / "export" / "noisy", noise_hu=60.0, seed=1, slices=6, size=96)
    (tmp_path / "export" / "junk.txt").write_text("not dicom")
    port = _free_port()
    cfg = config_from_dict({
        "state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"}, "dicom": {"output": {"sr": False}},
        "completion": {"quiet_period_s": {"default": 0.5, "CT": 0.5}}, "watch": {"file_stable_s": 0.0},
        "console": {"listen": f"127.0.0.1:{port}", "site": "test-site", "station": "CT1"}})
    runtime = Runtime(cfg, ClassicalScorer(), tmp_path / "export", sinks=[])
    stop = threading.Event()
    loop = threading.Thread(target=runtime.run, args=(stop,))
    loop.start()
    try:
        deadline, seen = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            try:
                seen = _samples(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                seen = {}
            if seen.get("mediqa_series_scored_total", 0) >= 1 and seen.get("mediqa_files_indexed_total", 0) >= 6:
                break
            time.sleep(0.3)
        assert seen["mediqa_series_scored_total"] == 1 and seen["mediqa_alerts_total"] == 1
        assert seen["mediqa_files_indexed_total"] == 6 and seen["mediqa_files_skipped_total"] == 1
        assert seen["mediqa_last_file_to_result_seconds_count"] == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok"
    finally:
        stop.set()
        loop.join(30)
        runtime.close()
