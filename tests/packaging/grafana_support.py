"""The dashboard generator (packaging/grafana/dashboard.py, a script, not a package) loaded by path, and the
PromQL of its panels made concrete (Grafana's variables filled in) for a real Prometheus to run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "packaging" / "grafana" / "dashboard.py"
COMMITTED = REPO / "packaging" / "grafana" / "mediqa-fleet.json"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mediqa_fleet_dashboard", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def concrete(expr: str) -> str:
    """What Grafana sends for "All" sites and stations and a 5-minute rate interval."""
    return expr.replace("$site", ".*").replace("$station", ".*").replace("$__rate_interval", "5m")
