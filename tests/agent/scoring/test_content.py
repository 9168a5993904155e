"""The content check: empty and pure-noise images are never "ok"; every real series has content."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa.agent.pipeline import series_input
from mediqa.agent.scoring.content import MIN_STRUCTURE, check_content, lag1_autocorrelation

RNG = np.random.default_rng(0)


def test_air_only_ct_has_no_anatomy():
    air = -1000.0 + RNG.normal(0.0, 20.0, (3, 128, 128))  # noise in the air range
    verdict = check_content(air, "CT")
    assert verdict.kind == "empty" and verdict.reason.startswith("no anatomy found")


def test_constant_or_zero_images_are_empty():
    assert check_content(np.zeros((2, 64, 64)), "MR").kind == "empty"
    assert check_content(np.full((2, 64, 64), -1024.0), "CT").kind == "empty"
    assert check_content(np.zeros((0, 64, 64)), "CT").kind == "empty"


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_pure_noise_is_noise(modality):
    if modality == "CT":
        stack = RNG.uniform(-1000.0, 1000.0, (3, 128, 128))
    else:
        stack = np.abs(RNG.normal(0, 10, (3, 64, 64)) + 1j * RNG.normal(0, 10, (3, 64, 64)))  # Rician
    verdict = check_content(stack, modality)
    assert verdict.kind == "noise" and verdict.reason.startswith("no image content: pure noise")


def test_smooth_anatomy_with_heavy_noise_still_has_structure():
    yy, xx = np.mgrid[:128, :128] - 64.0
    head = np.where(np.hypot(xx, yy) < 50, 40.0, -1000.0) + 300.0 * (np.hypot(xx, yy) > 45) * (np.hypot(xx, yy) < 50)
    noisy = head[None] + RNG.normal(0.0, 90.0, (2, 128, 128))
    assert check_content(noisy, "CT").kind == "ok"
    assert lag1_autocorrelation(RNG.normal(size=(64, 64))) < 0.05


@pytest.mark.slow
def test_every_shared_series_has_content(shared_layouts):
    """No clean real series may be called empty or noise (measured r 0.81-0.99 on chosen slices)."""
    for name, layout in shared_layouts.items():
        inputs = series_input(layout, slices=7)
        verdict = check_content(inputs.slices, layout.modality)
        assert verdict.kind == "ok", (name, verdict)
        assert verdict.structure > MIN_STRUCTURE + 0.4, name
