#!/usr/bin/env python3
"""The MedIQA fleet dashboard for Grafana, generated from code (grafanalib) so it is versioned and tested.

    python packaging/grafana/dashboard.py            # writes packaging/grafana/mediqa-fleet.json
    python packaging/grafana/dashboard.py --check    # exit 1 when the committed JSON is not what this makes

Import the JSON in Grafana (Dashboards > Import) and pick the Prometheus data source that scrapes the agents
(job "mediqa", rules in packaging/prometheus/mediqa-rules.yml). Three rows: fleet health (agents up, deaf,
GPU, degraded), alert rates (per station against its band, volume, median score drift) and latency per
station. ``tests/packaging/test_grafana_dashboard.py`` regenerates it and checks every query; the
Prometheus test runs every query against a real Prometheus scraping two agents.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    Dashboard,
    GridPos,
    RowPanel,
    Stat,
    Target,
    Template,
    Templating,
    TimeSeries,
)

OUT = Path(__file__).with_name("mediqa-fleet.json")
DATASOURCE = "${datasource}"
SEL = 'site=~"$site", station=~"$station"'  # every station query is filtered by the two variables
WIDTH = 24


def _target(expr: str, legend: str = "{{station}}", ref: str = "A") -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=DATASOURCE)


def _stat(title: str, expr: str, x: int, y: int, unit: str = "none", description: str = "") -> Stat:
    return Stat(title=title, dataSource=DATASOURCE, targets=[_target(expr, legend=title)], format=unit,
                description=description, gridPos=GridPos(h=4, w=6, x=x, y=y), reduceCalc="lastNotNull")


def _series(title: str, targets: list[Target], x: int, y: int, unit: str = "none", description: str = "",
            w: int = 12) -> TimeSeries:
    return TimeSeries(title=title, dataSource=DATASOURCE, targets=targets, unit=unit, description=description,
                      gridPos=GridPos(h=8, w=w, x=x, y=y), legendDisplayMode="table", legendPlacement="right")


def _variables() -> Templating:
    return Templating(list=[
        Template(name="datasource", label="Data source", type="datasource", query="prometheus", default="Prometheus"),
        Template(name="site", label="Site", dataSource=DATASOURCE,
                 query="label_values(mediqa_series_scored_total, site)",
                 includeAll=True, multi=True, default="$__all", refresh=2),
        Template(name="station", label="Station", dataSource=DATASOURCE,
                 query='label_values(mediqa_series_scored_total{site=~"$site"}, station)',
                 includeAll=True, multi=True, default="$__all", refresh=2),
    ])


def health(y: int) -> list[Any]:
    return [
        RowPanel(title="Fleet health", gridPos=GridPos(h=1, w=WIDTH, x=0, y=y)),
        _stat("Agents up", 'sum(up{job="mediqa"})', 0, y + 1, description="Agents Prometheus can scrape"),
        _stat("Agents down", 'count(up{job="mediqa"} == 0) or vector(0)', 6, y + 1,
              description="MediqaAgentDown fires after 5 minutes"),
        _stat("Deaf stations", 'count(ALERTS{alertname="MediqaAgentDeaf", alertstate="firing"}) or vector(0)',
              12, y + 1, description="No file event in working hours for longer than fleet.deaf_after_s"),
        _stat("On the CPU after a GPU",
              'count(ALERTS{alertname="MediqaBackendFellBackToCPU", alertstate="firing"}) or vector(0)', 18, y + 1),
        _series("Seconds since the last file event", [
            _target(f"mediqa_last_file_event_age_seconds{{{SEL}}}"),
            _target(f"max by (station) (mediqa_deaf_after_seconds{{{SEL}}})", "deaf after ({{station}})", "B"),
        ], 0, y + 5, unit="s"),
        _series("Backend on a GPU (1) / degraded (1)", [
            _target(f"mediqa_backend_gpu{{{SEL}}}", "GPU {{station}}"),
            _target(f"mediqa_degraded{{{SEL}}}", "degraded {{station}}", "B"),
        ], 12, y + 5),
    ]


def alert_rates(y: int) -> list[Any]:
    return [
        RowPanel(title="Alert rates", gridPos=GridPos(h=1, w=WIDTH, x=0, y=y)),
        _series("Retake alert rate over a day, against the band", [
            _target(f"mediqa:alert_rate:ratio1d{{{SEL}}}"),
            _target(f'max by (station) (mediqa_alert_rate_band{{{SEL}, bound="high"}})', "band high ({{station}})",
                    "B"),
            _target(f'min by (station) (mediqa_alert_rate_band{{{SEL}, bound="low"}})', "band low ({{station}})",
                    "C"),
        ], 0, y + 1, unit="percentunit", description="MediqaAlertRateOutOfBand: outside the band for an hour"),
        _series("Scored series per hour", [_target(f"mediqa:series_scored:rate1h{{{SEL}}} * 3600")], 12, y + 1),
        _series("Median series score: today and the 14-day baseline", [
            _target(f"mediqa:series_score:median1d{{{SEL}}}", "today {{station}}"),
            _target(f"mediqa:series_score:median14d{{{SEL}}}", "14 days {{station}}", "B"),
        ], 0, y + 9, description="MediqaMedianScoreDrift: more than 0.5 apart for 2 hours"),
        _series("Retake alerts per hour, by modality", [
            _target(f"sum by (station, modality) (increase(mediqa_alerts_total{{{SEL}}}[1h]))",
                    "{{station}} {{modality}}"),
        ], 12, y + 9),
    ]


def latency(y: int) -> list[Any]:
    def quantile(q: float, ref: str) -> Target:
        expr = (f"histogram_quantile({q}, sum by (station, le) "
                f"(rate(mediqa_last_file_to_result_seconds_bucket{{{SEL}}}[$__rate_interval])))")
        return _target(expr, f"p{int(q * 100)} {{{{station}}}}", ref)

    return [
        RowPanel(title="Latency per station", gridPos=GridPos(h=1, w=WIDTH, x=0, y=y)),
        _series("Last file to result", [quantile(0.5, "A"), quantile(0.9, "B")], 0, y + 1, unit="s"),
        _series("Files waiting to be indexed", [_target(f"mediqa_queue_files{{{SEL}}}")], 12, y + 1),
    ]


def dashboard() -> Dashboard:
    return Dashboard(
        title="MedIQA Edge fleet", uid="mediqa-fleet", tags=["mediqa"], timezone="browser", refresh="1m",
        description="Agents, alert rates and latency per station (packaging/grafana/dashboard.py generates it)",
        templating=_variables(), panels=[*health(0), *alert_rates(13), *latency(30)],
    ).auto_panel_ids()


def render() -> str:
    data = json.loads(json.dumps(dashboard().to_json_data(), cls=DashboardEncoder))
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the JSON (default {OUT.name})")
    parser.add_argument("--check", action="store_true", help="compare with the committed JSON instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs: run python packaging/grafana/dashboard.py'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
