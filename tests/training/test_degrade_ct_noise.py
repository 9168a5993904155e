"""CT image-domain noise and the pseudo-CT head: noise adds in quadrature and labels the dose head."""

from __future__ import annotations

import numpy as np
import pytest
from data_phantoms import ct_head, ellipse

from mediqa.measures import global_noise_level
from mediqa.training.datagen.pseudo_ct import AIR_HU, CSF_HU, GREY_HU, SKULL_MM, WHITE_HU, head_hu
from mediqa.training.degrade.ct_noise import equivalent_dose_fraction, simulate_image_noise
from mediqa.training.labels.heads import head_labels

SPACING = (0.5, 0.5)


@pytest.mark.parametrize("corr", [0.0, 1.0])
def test_added_noise_has_the_asked_sigma_and_keeps_the_image(corr: float) -> None:
    image = ct_head(256)
    out = simulate_image_noise(image, 20.0, 4.0, SPACING, corr, np.random.default_rng(0))
    delta = out.image - image
    assert abs(delta.std() - 20.0) < 0.2 and abs(delta.mean()) < 0.5
    assert out.kind == "ct_noise" and out.params["correlation_fwhm_mm"] == corr
    # Correlated grain: neighbouring pixels move together; white noise: they do not.
    lag1 = float(np.corrcoef(delta[:, :-1].ravel(), delta[:, 1:].ravel())[0, 1])
    assert (lag1 > 0.5) if corr else (abs(lag1) < 0.05)


def test_measured_noise_adds_in_quadrature_on_a_noisy_source() -> None:
    rng = np.random.default_rng(1)
    source = ct_head(256) + rng.normal(0.0, 6.0, (256, 256))
    s0 = global_noise_level(source[None], SPACING[0])
    for sigma in (10.0, 30.0):
        noisy = simulate_image_noise(source, sigma, s0, SPACING, 0.0, rng).image
        measured = global_noise_level(noisy[None].astype(np.float64), SPACING[0])
        assert measured == pytest.approx(np.hypot(s0, sigma), rel=0.15)


def test_dose_label_is_the_equivalent_dose() -> None:
    assert equivalent_dose_fraction(4.0, 0.0) == 1.0
    assert equivalent_dose_fraction(4.0, 4.0) == pytest.approx(0.5)  # twice the variance = half the dose
    out = simulate_image_noise(np.zeros((64, 64)), 12.0, 4.0, SPACING, 0.0, np.random.default_rng(2))
    labels = head_labels("CT", out.kind, out.plain_params())
    assert labels["ct_dose"] == pytest.approx(0.1, rel=1e-3)
    assert labels["ct_blur_fwhm_mm"] == 0.0 and labels["mr_snr"] is None
    with pytest.raises(ValueError):
        equivalent_dose_fraction(0.0, 5.0)


def test_pseudo_ct_layers_brain_skull_scalp_air() -> None:
    shape = (1, 120, 120)
    brain = ellipse(shape[1:], (60, 60), (35, 30))[None]
    grey = np.where(brain, 0.6, 0.0).astype(np.float32)
    white = np.where(brain, 0.4, 0.0).astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    hu = head_hu(grey, white, brain, distance_transform_edt(~brain))[0]
    assert hu[60, 60] == pytest.approx(0.6 * GREY_HU + 0.4 * WHITE_HU)
    assert hu[60, 60] > CSF_HU
    row = hu[60, 60 + 30:]  # outward from the brain edge along x
    skull = row[(row > 500)]
    assert len(skull) == pytest.approx(SKULL_MM, abs=1.5)  # 1 mm pixels here
    assert row.max() > 1300  # cortical table
    assert row[-1] == AIR_HU
