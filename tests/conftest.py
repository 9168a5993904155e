"""Shared fixtures: real DICOM data from ../shared (indexed once), and a guard against leaked threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.engines.gate.golden import GoldenSet, golden_from_inputs

REPO = Path(__file__).resolve().parents[1]
SHARED_DICOM = REPO.parent / "shared" / "data" / "dicom"


@pytest.fixture(scope="session")
def shared_dicom() -> Path:
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"real DICOM data not found at {SHARED_DICOM} (the ../shared checkout beside the repo)")
    return SHARED_DICOM


def series_name(records: list[InstanceRecord]) -> str:
    """The series folder relative to the shared data root: a readable, stable id for tables and ids."""
    rel = Path(min(r.path for r in records)).relative_to(SHARED_DICOM)
    return str(rel.parent)


@pytest.fixture(scope="session")
def shared_series() -> dict[str, list[InstanceRecord]]:
    """Records of every shared series keyed by folder; the transfer-syntax set shares one series UID."""
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"real DICOM data not found at {SHARED_DICOM} (the ../shared checkout beside the repo)")
    return {series_name(recs): recs for recs in scan_tree(SHARED_DICOM).values()}


@pytest.fixture(scope="session")
def shared_layouts(shared_series: dict[str, list[InstanceRecord]]) -> dict[str, SeriesLayout]:
    return {name: plan_series(recs) for name, recs in shared_series.items()}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny contract model (tests/tiny_model.py), exported once per session."""
    import tiny_model

    return tiny_model.export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def golden() -> GoldenSet:
    """A golden set of the tiny model's own cases (clean and degraded groups)."""
    import tiny_model

    return golden_from_inputs(tiny_model.golden_cases(), tiny_model.provenance())


@pytest.fixture(autouse=True)
def _no_thread_leaks():
    """A daemon's tests must stop every thread they start (watchdog observers, agent loops)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leaked:
        t.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads leaked: {still}"
