"""Multi-scale structural similarity (MS-SSIM) in numpy/scipy.

Wang, Simoncelli & Bovik 2003 ("Multiscale structural similarity for image quality assessment",
Asilomar): contrast-structure terms at 5 dyadic scales and luminance at the coarsest, weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Gaussian window sigma 1.5 (11 taps). Filtering uses reflected
borders instead of 'valid' windows so a 160-pixel crop still has 5 scales; negative terms are clipped to
0 before the power, as the reference implementations do, so heavy noise cannot flip the sign.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import gaussian_filter

log = logging.getLogger(__name__)

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03
SIGMA = 1.5


def _ssim_terms(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[float, float]:
    """Mean luminance term and mean contrast-structure term of SSIM."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    blur = lambda a: gaussian_filter(a, SIGMA, truncate=3.5, mode="reflect")  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return float(lum.mean()), float(cs.mean())


def _half(a: np.ndarray) -> np.ndarray:
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    a = a[:h, :w]
    return 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])


def ms_ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0,
            weights: tuple[float, ...] = WEIGHTS) -> float:
    """MS-SSIM of ``test`` against ``reference`` (same 2D shape); 1.0 means identical."""
    if reference.shape != test.shape or reference.ndim != 2:
        raise ValueError(f"need two 2D images of one shape, got {reference.shape} and {test.shape}")
    if min(reference.shape) < 2 ** (len(weights) - 1):
        raise ValueError(f"image {reference.shape} too small for {len(weights)} scales")
    x = reference.astype(np.float64)
    y = test.astype(np.float64)
    value = 1.0
    for level, weight in enumerate(weights):
        lum, cs = _ssim_terms(x, y, data_range)
        last = level == len(weights) - 1
        term = max(lum * cs if last else cs, 0.0)
        value *= term**weight
        if not last:
            x, y = _half(x), _half(y)
    return float(value)
