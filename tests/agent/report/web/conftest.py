"""Fixtures of the console's tests: real results of generated phantoms in a real state database, a real
console on 127.0.0.1:0, and (for the browser tests) Debian's chromium driven by Playwright.

Results are made by the real pipeline (``analyse_series`` with the classical scorer) on phantom CT
series (noise 4 HU -> ok, 60 HU -> retake) and stored through the real ``StateDB`` / ``ResultStore``;
the contact sheets by ``write_sheet``. Screenshots go to ``$MEDIQA_ARTEFACTS`` when set, else tmp_path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_support import CHROMIUM, SHEETS, State, launch, warm_up

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.pipeline import analyse_series
from mediqa.agent.report.sheets import write_sheet
from mediqa.agent.report.web import ConsoleServer
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.scoring.classical import ClassicalScorer


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[SeriesLayout, SeriesResult]]:
    """``ok`` and ``retake``: (layout, result) of two phantom CT series, scored once per session."""
    root = tmp_path_factory.mktemp("phantoms")
    config = config_from_dict({"state_dir": str(root / "unused"), "scoring": {"scorer": "classical"}})
    out = {}
    for name, noise, seed in (("ok", 4.0, 0), ("retake", 60.0, 1)):
        write_phantom_ct(root / name, noise_hu=noise, seed=seed, slices=8, size=96)
        (records,) = scan_tree(root / name).values()
        analysis = analyse_series(records, ClassicalScorer(), config)
        assert analysis.result.decision == name
        out[name] = (analysis.layout, analysis.result)
        sheet = write_sheet(root / "state", 0, analysis.layout, analysis.result)
        assert sheet is not None
        SHEETS[analysis.result.series_uid] = sheet.read_bytes()
    return out


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    s = State(tmp_path / "state")
    yield s
    s.close()


@pytest.fixture
def console(state: State) -> Iterator[ConsoleServer]:
    server = launch(state)
    yield server
    server.stop()


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MEDIQA_ARTEFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium under Playwright (no browser download); skipped with the reason when absent."""
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed: `apt-get install -y chromium` (CI installs it; make system-deps)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed: `pip install playwright` (no `playwright install`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
                                    args=["--no-sandbox"])
        warm_up(browser, tmp_path_factory.mktemp("warm-up"))
        yield browser
        browser.close()
