"""One generated archive and its ``mediqa score --json`` reference per session (the backfill tests compare
against it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from backfill_support import make_archive, score_json

N_SERIES = 24


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_archive(tmp_path_factory.mktemp("archive"), N_SERIES)


@pytest.fixture(scope="session")
def reference(archive: Path) -> dict[str, dict[str, Any]]:
    ref = score_json(archive)
    assert len(ref) == N_SERIES
    return ref
