"""Rician noise: background statistics must match the Rayleigh distribution, SNR must hit its target."""

from __future__ import annotations

import numpy as np
import pytest
from data_phantoms import mr_object

from mediqa.training.degrade.mr_noise import (
    RAYLEIGH_MEAN,
    RAYLEIGH_STD,
    estimate_noise,
    foreground_mask,
    simulate_snr,
)


def test_background_is_rayleigh_with_the_injected_sigma() -> None:
    clean = mr_object((256, 256))
    out = simulate_snr(clean, 10.0, np.random.default_rng(0))
    assert out is not None
    sigma = out.params["sigma_total"]
    bg = out.image[:40, :].ravel()  # air above the object
    assert bg.mean() / sigma == pytest.approx(RAYLEIGH_MEAN, rel=0.03)  # 1.2533
    assert bg.std() / sigma == pytest.approx(RAYLEIGH_STD, rel=0.03)  # 0.655
    assert bg.mean() / bg.std() == pytest.approx(RAYLEIGH_MEAN / RAYLEIGH_STD, rel=0.03)  # 1.913


def test_snr_is_reached_and_noise_measured_back() -> None:
    clean = mr_object((256, 256))
    for target in (5.0, 20.0):
        out = simulate_snr(clean, target, np.random.default_rng(1))
        assert out is not None
        est = estimate_noise(out.image)
        assert est.sigma == pytest.approx(out.params["sigma_total"], rel=0.05)
        signal = clean[foreground_mask(clean)].mean()
        assert signal / out.params["sigma_total"] == pytest.approx(target, rel=1e-6)


def test_existing_noise_adds_in_quadrature_and_higher_snr_is_skipped() -> None:
    rng = np.random.default_rng(2)
    clean = mr_object((256, 256))
    source = np.hypot(clean + rng.normal(0, 4.0, clean.shape), rng.normal(0, 4.0, clean.shape))
    est = estimate_noise(source)
    assert est.sigma == pytest.approx(4.0, rel=0.05)
    out = simulate_snr(source, 5.0, np.random.default_rng(3), source=est)
    assert out is not None
    assert out.params["sigma_added"] ** 2 + est.sigma**2 == pytest.approx(out.params["sigma_total"] ** 2)
    assert simulate_snr(source, 1000.0, np.random.default_rng(3), source=est) is None
