"""Shared fixtures for the selection tests: the real series of ../shared/data/dicom, indexed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout, plan_series

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DICOM = REPO_ROOT.parent / "shared" / "data" / "dicom"


def series_name(records: list[InstanceRecord]) -> str:
    """The series folder relative to the shared data root: a readable, stable id for tables and ids."""
    rel = Path(min(r.path for r in records)).relative_to(SHARED_DICOM)
    return str(rel.parent)


@pytest.fixture(scope="session")
def shared_series() -> dict[str, list[InstanceRecord]]:
    """Records of every shared series keyed by folder; the transfer-syntax set shares one series UID."""
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"shared DICOM data not found at {SHARED_DICOM} (see shared/data/README.md)")
    return {series_name(recs): recs for recs in scan_tree(SHARED_DICOM).values()}


@pytest.fixture(scope="session")
def shared_layouts(shared_series: dict[str, list[InstanceRecord]]) -> dict[str, SeriesLayout]:
    return {name: plan_series(recs) for name, recs in shared_series.items()}
