"""Where the shared DICOM exports live for the data tests; skip clearly when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DICOM = REPO.parent / "shared" / "data" / "dicom"
TINY_CONFIG = REPO / "configs" / "data" / "tiny.yaml"
DEFAULT_CONFIG = REPO / "configs" / "data" / "default.yaml"


def shared_dicom() -> Path:
    if not SHARED_DICOM.is_dir():
        pytest.skip(f"shared DICOM data not found at {SHARED_DICOM} (put ../shared next to the repository)")
    return SHARED_DICOM
