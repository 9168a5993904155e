"""The fleet's share of /metrics: station defaulting to the host name, the thresholds the alerting rules
compare with (fleet: config), working hours in local time at scrape, the GPU gauge and the score histogram."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mediqa.agent.config import config_from_dict
from mediqa.agent.config_fleet import FleetConfig
from mediqa.agent.report.metrics import SCORE_BUCKETS, AgentMetrics


def _families(metrics: AgentMetrics) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(metrics.render().decode())}


def _one(samples, name, **labels):
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def _local_epoch(year: int, month: int, day: int, hour: int) -> float:
    return time.mktime((year, month, day, hour, 30, 0, 0, 0, -1))


def test_station_defaults_to_the_host_name_and_every_sample_is_labelled():
    got = _families(AgentMetrics(site="north"))
    host = socket.gethostname().split(".", 1)[0]
    every = [s for samples in got.values() for s in samples]
    assert every and all(s.labels.get("station") == host[:64] and s.labels.get("site") == "north" for s in every)


def test_fleet_thresholds_and_working_hours_at_scrape():
    now = {"t": _local_epoch(2026, 12, 1, 10)}  # a Tuesday, 10:30 local time
    fleet = FleetConfig(alert_rate_band=(0.02, 0.15), deaf_after_s=1800.0, working_hours=(7, 19),
                        working_days=(1, 2, 3, 4, 5))
    metrics = AgentMetrics(site="north", station="CT1", clock=lambda: now["t"], fleet=fleet)
    got = _families(metrics)
    assert _one(got["mediqa_alert_rate_band"], "mediqa_alert_rate_band", bound="low") == 0.02
    assert _one(got["mediqa_alert_rate_band"], "mediqa_alert_rate_band", bound="high") == 0.15
    assert _one(got["mediqa_deaf_after_seconds"], "mediqa_deaf_after_seconds") == 1800.0
    assert _one(got["mediqa_working_hours"], "mediqa_working_hours") == 1.0
    now["t"] = _local_epoch(2026, 12, 1, 22)  # the same day at night
    assert _one(_families(metrics)["mediqa_working_hours"], "mediqa_working_hours") == 0.0
    now["t"] = _local_epoch(2026, 12, 6, 10)  # a Sunday morning
    assert _one(_families(metrics)["mediqa_working_hours"], "mediqa_working_hours") == 0.0


def test_gpu_gauge_follows_the_backend_in_use_and_scores_feed_the_histogram():
    metrics = AgentMetrics(site="s", station="CT1")
    metrics.backend("onnxruntime-cuda")
    assert _one(_families(metrics)["mediqa_backend_gpu"], "mediqa_backend_gpu") == 1
    metrics.scored("ok", "CT", 2.0, score=3.4, backend="onnxruntime-cuda")
    metrics.scored("retake", "CT", 2.0, score=1.1, backend="onnxruntime-cpu")  # fell back: seen at this result
    metrics.scored("unscored", "CT", None, score=float("nan"), backend="")
    got = _families(metrics)
    assert _one(got["mediqa_backend_gpu"], "mediqa_backend_gpu") == 0
    assert [s.labels["backend"] for s in got["mediqa_backend_info"]] == ["onnxruntime-cpu"]
    hist = got["mediqa_series_score"]
    assert _one(hist, "mediqa_series_score_count", modality="CT") == 2  # unscored results have no score
    buckets = {s.labels["le"]: s.value for s in hist if s.name.endswith("_bucket")}
    assert len(buckets) == len(SCORE_BUCKETS) + 1 and buckets["1.0"] == 0 and buckets["1.25"] == 1
    assert buckets["3.5"] == 2


def test_the_fleet_section_is_validated_at_load(tmp_path: Path):
    import pytest

    from mediqa.errors import ConfigError

    assert config_from_dict({"fleet": {"alert_rate_band": [0.01, 0.1]}}).fleet.alert_rate_band == (0.01, 0.1)
    for bad in ({"alert_rate_band": [0.3, 0.1]}, {"deaf_after_s": 0}, {"working_hours": [19, 7]},
                {"working_days": [0, 8]}):
        with pytest.raises(ConfigError):
            config_from_dict({"fleet": bad})
