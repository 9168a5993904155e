"""Fixtures shared by the agent's tests: a clean and a noisy phantom CT series (12 slices, 96 px)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediqa.agent.samples import write_phantom_ct


def phantom_series(dest: Path, noise_hu: float, seed: int) -> list[Path]:
    write_phantom_ct(dest, noise_hu=noise_hu, seed=seed, slices=12, size=96)
    return sorted(dest.glob("*.dcm"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return phantom_series(tmp_path_factory.mktemp("clean"), 4.0, 0)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return phantom_series(tmp_path_factory.mktemp("noisy"), 60.0, 1)
