"""Ghosting, spikes, bias field, undersampling and truncation do what their physics says."""

from __future__ import annotations

import numpy as np
import pytest
from data_phantoms import mr_object

from mediqa.training.degrade.kspace import fft2c
from mediqa.training.degrade.mr_bias import simulate_bias
from mediqa.training.degrade.mr_ghost import simulate_ghost
from mediqa.training.degrade.mr_kspace import simulate_truncation, simulate_undersampling
from mediqa.training.degrade.mr_spike import simulate_spike


@pytest.mark.parametrize("axis", [0, 1])
def test_nyquist_ghost_sits_half_a_fov_away_along_pe(axis: int) -> None:
    img = mr_object((128, 128))
    out = simulate_ghost(img, axis, 0.5, period=2).image
    shifted = np.roll(img, 64, axis=axis)
    ghost_region = (shifted > 0) & (img == 0)
    other = np.roll(img, 64, axis=1 - axis)
    not_ghost = (other > 0) & (img == 0) & ~ghost_region
    assert out[ghost_region].mean() > 0.15 * img.max()
    assert out[not_ghost].mean() < 0.01 * img.max()


def test_spike_adds_a_plane_wave_with_recorded_position() -> None:
    img = mr_object()
    out = simulate_spike(img, np.random.default_rng(0), 0.2, n_spikes=2)
    k = np.abs(fft2c(out.image - img))  # the magnitude image holds the wave and its mirror
    assert len(out.params["spikes"]) == 2
    h, w = img.shape
    for s in out.params["spikes"]:
        at = max(k[s["row"], s["col"]], k[(h - s["row"]) % h, (w - s["col"]) % w])
        assert at > 20 * np.median(k)
    bg = out.image[img == 0]
    assert bg.std() > 0.5


def test_bias_field_is_smooth_multiplicative_and_bounded() -> None:
    img = mr_object()
    out = simulate_bias(img, np.random.default_rng(0), 0.4)
    ratio = out.image[img > 0] / img[img > 0]
    assert ratio.min() >= out.params["field_min"] - 1e-6 and ratio.max() <= out.params["field_max"] + 1e-6
    assert np.all(out.image[img == 0] == 0)
    assert len(out.params["coefficients"]) == 9


def test_undersampling_keeps_the_centre_and_a_1_over_r_fraction() -> None:
    img = mr_object((128, 128))
    out = simulate_undersampling(img, 0, 4.0, np.random.default_rng(0))
    assert out.params["lines_kept"] == 32 and out.params["centre_fraction"] == pytest.approx(0.08)
    assert np.abs(out.image - img).mean() > 1.0


def test_truncation_blurs_and_full_keep_is_identity() -> None:
    img = mr_object((128, 128))
    np.testing.assert_allclose(simulate_truncation(img, 1.0).image, img, atol=1e-3)
    low = simulate_truncation(img, 0.3).image
    assert np.abs(np.diff(low, axis=1)).max() < np.abs(np.diff(img, axis=1)).max()
