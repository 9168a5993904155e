"""CT blur: a softer reconstruction kernel (in-plane) and a thicker reconstructed slice (through-plane).

A smoother kernel multiplies the MTF by a low-pass; a Gaussian point-spread function of given FWHM in mm
is the standard first-order model (ICRU Report 87, ch. 3). A thicker slice is the average of thinner
contiguous slices (the slice sensitivity profile widens), which blurs small structures and lowers noise
as 1/sqrt(n) - so the noise labels of the model must not be read as dose there.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import gaussian_filter

from mediqa.training.degrade.base import Degraded, ParamValue

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def simulate_kernel_blur(image: np.ndarray, fwhm_mm: float, spacing_mm: tuple[float, float]) -> Degraded:
    """Convolve with an isotropic Gaussian PSF of ``fwhm_mm`` (added to the scanner's own PSF)."""
    if fwhm_mm < 0:
        raise ValueError(f"FWHM must not be negative, got {fwhm_mm}")
    sigma_px = tuple(fwhm_mm / FWHM_PER_SIGMA / s for s in spacing_mm)
    out = gaussian_filter(image.astype(np.float64), sigma=sigma_px, mode="nearest") if fwhm_mm else image
    params: dict[str, ParamValue] = {"mode": "kernel", "fwhm_mm": fwhm_mm, "sigma_px": [float(s) for s in sigma_px],
              "slab_slices": 1, "slab_mm": 0.0}
    return Degraded("ct_blur", out, params)


def simulate_thick_slice(slab: np.ndarray, slice_step_mm: float) -> Degraded:
    """Average ``K`` contiguous slices (``slab`` is ``[K, H, W]``, centre slice in the middle)."""
    if slab.ndim != 3 or slab.shape[0] % 2 == 0:
        raise ValueError(f"expected an odd number of contiguous slices, got shape {slab.shape}")
    k = slab.shape[0]
    params: dict[str, ParamValue] = {"mode": "slab", "fwhm_mm": 0.0, "slab_slices": k,
                                     "slab_mm": float(k * slice_step_mm)}
    return Degraded("ct_blur", slab.astype(np.float64).mean(axis=0), params)
