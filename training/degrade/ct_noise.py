"""CT image-domain noise: Gaussian noise of a given standard deviation in HU, white or mildly correlated.

Projection-domain dose simulation (``ct_dose``) reproduces the streaky, kernel-shaped texture of a real
low-dose scan, but only down to the lowest dose fraction it is asked for and only with the texture of the
source's kernel. Noise added in the image domain covers what that leaves out: noisier scans than the
grid reaches (a wrong protocol, a large patient) and other kernels' grain. It is also what a quick
"add noise" robustness check does, so the model must not be blind to it.

Noise adds in quadrature (variances of independent noise sum), so the noisier image is what the same
scanner would give at ``sigma_0^2 / (sigma_0^2 + sigma^2)`` of the source's dose (noise variance goes as
1 / dose, ICRU Report 87, ch. 5): that equivalent dose fraction is the label of the dose head.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import gaussian_filter

from mediqa.training.degrade.base import Degraded
from mediqa.training.degrade.ct_blur import FWHM_PER_SIGMA

log = logging.getLogger(__name__)


def equivalent_dose_fraction(source_sigma_hu: float, added_sigma_hu: float) -> float:
    """Dose fraction whose quantum noise matches the source plus ``added_sigma_hu`` (quadrature)."""
    if source_sigma_hu <= 0 or added_sigma_hu < 0:
        raise ValueError(f"need source noise > 0 and added noise >= 0, got {source_sigma_hu}, {added_sigma_hu}")
    s0 = source_sigma_hu**2
    return s0 / (s0 + added_sigma_hu**2)


def simulate_image_noise(image: np.ndarray, sigma_hu: float, source_sigma_hu: float,
                         spacing_mm: tuple[float, float], correlation_fwhm_mm: float,
                         rng: np.random.Generator) -> Degraded:
    """Add zero-mean Gaussian noise of standard deviation ``sigma_hu``.

    ``correlation_fwhm_mm`` > 0 low-passes the noise with a Gaussian of that FWHM before it is rescaled to
    ``sigma_hu`` (grain like a softer kernel's); 0 gives white noise. Air outside the body gets noise too,
    as on a real scan.
    """
    if sigma_hu < 0 or correlation_fwhm_mm < 0:
        raise ValueError(f"sigma and correlation must not be negative, got {sigma_hu}, {correlation_fwhm_mm}")
    noise = rng.standard_normal(image.shape)
    if correlation_fwhm_mm > 0:
        sigma_px = tuple(correlation_fwhm_mm / FWHM_PER_SIGMA / s for s in spacing_mm)
        noise = gaussian_filter(noise, sigma=sigma_px, mode="wrap")
    noise *= sigma_hu / max(float(noise.std()), 1e-12)
    params = {"sigma_hu": float(sigma_hu), "correlation_fwhm_mm": float(correlation_fwhm_mm),
              "source_noise_hu": float(source_sigma_hu),
              "dose_fraction": equivalent_dose_fraction(source_sigma_hu, sigma_hu)}
    return Degraded("ct_noise", image.astype(np.float64) + noise, params)
