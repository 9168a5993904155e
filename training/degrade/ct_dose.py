"""Low-dose CT from a routine-dose slice: Poisson + electronic noise injected in the projection domain.

Physics (Zeng et al. 2015, IEEE TNS 62:2226; Yu et al. 2012, Med Phys 39:2956): a ray with line
integral ``p`` measured with incident flux ``I0`` has post-log variance ``e^p/I0 + s_e^2 e^{2p}/I0^2``.
Going from dose 1 to dose ``a`` must add the *difference* of the two variances, because the source image
already carries its own full-dose noise. That difference is exactly the variance of a measurement made with
flux ``I0 a/(1-a)`` and electronic variance ``s_e^2 (1+a)/(1-a)``, so we draw Poisson counts at that flux,
add Gaussian electronic noise, take the log, filtered-back-project the noise and add it to the original.
The total noise variance is then ``sigma_0^2 / a``: noise std follows ``1/sqrt(dose)``.

``I0`` is not in the DICOM header, so it is calibrated per source slice: a reference simulation at a known
flux is measured with the same noise estimator as the source (global noise level), and ``I0`` is scaled so
that a simulated full-dose scan would carry exactly the noise measured in the original.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mediqa.training.degrade.base import Degraded
from mediqa.training.degrade.ct_project import Projection

log = logging.getLogger(__name__)

NoiseMeasure = Callable[[np.ndarray], float]

I0_REFERENCE = 1.0e5  # photons per detector bin per view; typical full-dose flux is 1e5 - 2.25e5
I0_NOMINAL = 1.5e5  # a clinical full-dose flux per real detector reading
ELECTRONIC_SIGMA = 3.0  # counts per real reading; electronic variance ~ 8 - 100 on clinical systems
MIN_COUNTS = 1.0  # photon starvation floor before the log, as in clinical pre-processing


@dataclass(frozen=True)
class DoseCalibration:
    """Result of matching the simulated full-dose noise to the noise measured in the source slice."""

    i0: float  # calibrated full-dose flux per simulated bin and view (an effective flux for this geometry)
    source_noise_hu: float  # noise measured in the source slice
    reference_noise_hu: float  # noise a scan at I0_REFERENCE would add, same estimator
    electronic_sigma: float  # electronic noise std in the same effective units as ``i0``


def _noise_sinogram(p: np.ndarray, flux: float, electronic_sigma: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Post-log noise of one measurement at ``flux``: -log(counts / flux) - p."""
    expected = flux * np.exp(-p)
    counts = rng.poisson(expected).astype(np.float64)
    if electronic_sigma > 0:
        counts += rng.normal(0.0, electronic_sigma, size=counts.shape)
    counts = np.maximum(counts, MIN_COUNTS)
    return -np.log(counts / flux) - p


def calibrate_i0(proj: Projection, measure: NoiseMeasure, rng: np.random.Generator,
                 electronic_sigma: float = ELECTRONIC_SIGMA, check_dose: float = 0.25) -> DoseCalibration:
    """Find the full-dose flux whose simulated noise equals the source's measured noise.

    Measured noise adds in quadrature: sigma(source + injected)^2 = sigma_0^2 + sigma_inj^2, and
    sigma_inj^2 scales as 1/I0. A first guess comes from a scan at I0_REFERENCE; it is then refined at
    ``check_dose``, where the injected noise should be sigma_0^2 (1/a - 1): the estimator is used at the
    noise level the data set spans, so its own non-linearity cancels.
    """
    source = float(measure(proj.image_hu))
    if not np.isfinite(source) or source <= 0:
        raise ValueError(f"cannot calibrate dose: source noise measured as {source!r}")
    noise = proj.fbp_delta_hu(_noise_sinogram(proj.line_integrals, I0_REFERENCE, electronic_sigma, rng))
    ref_var = _injected_variance(proj.image_hu, noise, source, measure)
    i0 = I0_REFERENCE * ref_var / source**2
    calib = _with_electronic(i0, source, ref_var, electronic_sigma)
    check = simulate_dose(proj, check_dose, calib, rng).image
    wanted = source**2 * (1.0 / check_dose - 1.0)
    got = _injected_variance(proj.image_hu, check - proj.image_hu, source, measure)
    i0 *= got / wanted
    log.debug("calibrated I0 %.3g (source noise %.2f HU, refinement x%.3f)", i0, source, got / wanted)
    return _with_electronic(i0, source, ref_var, electronic_sigma)


def _injected_variance(image: np.ndarray, noise: np.ndarray, source: float, measure: NoiseMeasure) -> float:
    combined = float(measure(image + noise))
    var = combined**2 - source**2
    if np.isfinite(var) and var > 0.05 * source**2:
        return var
    # The added noise was lost in the estimator's spread: fall back to the pixel variance in soft tissue.
    tissue = (image > -100) & (image < 200)
    log.debug("injected noise below estimator resolution; using the pixel variance of the noise image")
    return float(np.var(noise[tissue])) if tissue.any() else float(np.var(noise))


def _with_electronic(i0: float, source: float, ref_var: float, electronic_sigma: float) -> DoseCalibration:
    # Our few parallel views stand for many real readings (more views, thicker slices): I0 is an effective
    # flux f times a real one, and the electronic noise of f summed readings has variance f * sigma_e^2.
    effective_sigma = electronic_sigma * max(1.0, i0 / I0_NOMINAL) ** 0.5
    return DoseCalibration(i0=i0, source_noise_hu=source, reference_noise_hu=float(ref_var**0.5),
                           electronic_sigma=effective_sigma)


def simulate_dose(proj: Projection, dose_fraction: float, calib: DoseCalibration,
                  rng: np.random.Generator) -> Degraded:
    """The slice as if scanned at ``dose_fraction`` of its original mAs (1.0 returns the original)."""
    if not 0 < dose_fraction <= 1:
        raise ValueError(f"dose fraction must be in (0, 1], got {dose_fraction}")
    params = {
        "dose_fraction": dose_fraction,
        "i0_full": calib.i0,
        "electronic_sigma": calib.electronic_sigma,
        "n_views": proj.n_views,
        "source_noise_hu": calib.source_noise_hu,
        "expected_noise_hu": calib.source_noise_hu / dose_fraction**0.5,
        "geometry": "parallel-beam, ramp FBP",
    }
    if dose_fraction == 1.0:
        return Degraded("ct_dose", proj.image_hu.copy(), params)
    a = dose_fraction
    flux = calib.i0 * a / (1.0 - a)
    sigma_e = calib.electronic_sigma * ((1.0 + a) / (1.0 - a)) ** 0.5
    noise = proj.fbp_delta_hu(_noise_sinogram(proj.line_integrals, flux, sigma_e, rng))
    params.update({"injected_flux": flux, "injected_electronic_sigma": sigma_e})
    return Degraded("ct_dose", proj.with_delta(noise), params)
