"""Shared fixtures: real DICOM data from ../shared, and a guard against leaked threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DICOM = REPO.parent / "shared" / "data" / "dicom"


@pytest.fixture(scope="session")
def shared_dicom() -> Path:
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"real DICOM data not found at {SHARED_DICOM} (the ../shared checkout beside the repo)")
    return SHARED_DICOM


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
