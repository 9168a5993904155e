"""CT dose physics: noise std must follow 1/sqrt(dose), measured with the global-noise-level estimator."""

from __future__ import annotations

import numpy as np
import pytest
from data_paths import shared_dicom
from data_phantoms import ct_head

from mediqa.measures import global_noise_level
from mediqa.training.degrade.ct_dose import _noise_sinogram, calibrate_i0, simulate_dose
from mediqa.training.degrade.ct_project import Projection

DOSES = (1.0, 0.5, 0.25, 0.1)
SPACING = 0.8


def _measure(spacing: float):
    return lambda img: global_noise_level(img[None], spacing)


def _scanned_phantom() -> np.ndarray:
    """A phantom 'scanned' at some dose: it already carries realistic, ramp-filtered noise."""
    truth = Projection.of(ct_head(256), SPACING, 180)
    noise = truth.fbp_delta_hu(_noise_sinogram(truth.line_integrals, 1e7, 3.0, np.random.default_rng(1)))
    return truth.with_delta(noise)


def _exponent(doses: tuple[float, ...], noise: list[float]) -> float:
    return float(np.polyfit(np.log(doses), np.log(noise), 1)[0])


def _check_inverse_sqrt(image: np.ndarray, spacing: float, views: int, doses: tuple[float, ...]) -> list[float]:
    proj = Projection.of(image, spacing, views)
    rng = np.random.default_rng(5)
    calib = calibrate_i0(proj, _measure(spacing), rng)
    noise = [_measure(spacing)(simulate_dose(proj, d, calib, rng).image) for d in doses]
    for d, n in zip(doses, noise, strict=True):
        expected = noise[0] / d**0.5
        assert abs(n / expected - 1.0) < 0.10, f"dose {d}: noise {n:.2f} HU, expected {expected:.2f} HU"
    assert -0.55 < _exponent(doses, noise) < -0.45
    return noise


@pytest.mark.slow
def test_phantom_noise_follows_inverse_sqrt_dose() -> None:
    noise = _check_inverse_sqrt(_scanned_phantom(), SPACING, 180, DOSES)
    assert noise[-1] > 2.5 * noise[0]


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_head_ct_noise_follows_inverse_sqrt_dose() -> None:
    from mediqa.agent.dicom.index import scan_tree
    from mediqa.agent.dicom.volume import plan_series

    layout = plan_series(next(iter(scan_tree(shared_dicom() / "dcm_qa_ct" / "In" / "GE").values())))
    image = layout.read_slices([14])[0].astype(np.float64)
    _check_inverse_sqrt(image, layout.pixel_spacing[0], 360, (1.0, 0.5, 0.25, 0.05))


@pytest.mark.slow
def test_full_dose_returns_the_source_and_records_parameters() -> None:
    image = _scanned_phantom()
    proj = Projection.of(image, SPACING, 90)
    calib = calibrate_i0(proj, _measure(SPACING), np.random.default_rng(0))
    out = simulate_dose(proj, 1.0, calib, np.random.default_rng(0))
    np.testing.assert_array_equal(out.image, image.astype(np.float32))
    low = simulate_dose(proj, 0.25, calib, np.random.default_rng(0))
    for key in ("dose_fraction", "i0_full", "electronic_sigma", "n_views", "injected_flux"):
        assert key in low.params
    assert low.params["dose_fraction"] == 0.25
    with pytest.raises(ValueError):
        simulate_dose(proj, 0.0, calib, np.random.default_rng(0))


@pytest.mark.slow
def test_noise_is_ramp_filtered_not_white() -> None:
    """FBP noise has a ramp-shaped power spectrum (no power near DC); white image noise is flat."""
    proj = Projection.of(ct_head(192), SPACING, 180)
    noise = proj.fbp_delta_hu(_noise_sinogram(proj.line_integrals, 1e5, 3.0, np.random.default_rng(2)))
    nps = np.abs(np.fft.fftshift(np.fft.fft2(noise[56:136, 56:136]))) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftshift(np.fft.fftfreq(80)), np.fft.fftshift(np.fft.fftfreq(80)),
                              indexing="ij"))
    low, mid = nps[(f > 0) & (f < 0.05)].mean(), nps[(f > 0.15) & (f < 0.35)].mean()
    assert low < 0.3 * mid, f"low/mid noise power {low / mid:.2f}: expected a ramp-filtered spectrum"


def test_padding_outside_the_field_of_view_is_left_alone() -> None:
    image = ct_head(128)
    image[:, :6] = -2048.0
    proj = Projection.of(image, SPACING, 90)
    calib = calibrate_i0(proj, _measure(SPACING), np.random.default_rng(0))
    out = simulate_dose(proj, 0.1, calib, np.random.default_rng(0)).image
    assert np.all(out[:, :6] == -2048.0)
