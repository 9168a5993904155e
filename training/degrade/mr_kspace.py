"""k-space undersampling (aliasing) and truncation (blur, Gibbs ringing) of an MR slice.

Undersampling: keep a fully sampled centre (fraction 0.08 at 4x, 0.04 at 8x, as in the fastMRI masks,
Zbontar et al. 2018, arXiv:1811.08839) plus random phase-encode lines up to 1/R of them, and reconstruct by
zero filling: incoherent aliasing along the phase-encode axis. Truncation: keep only the central fraction of
k-space in both directions (a lower acquired matrix interpolated to the same size): blur and ringing at
edges (Gibbs; Haacke et al., ch. 13).
"""

from __future__ import annotations

import logging

import numpy as np

from mediqa.training.degrade.base import Degraded, ParamValue
from mediqa.training.degrade.kspace import along, centre_lines, fft2c, ifft2c

log = logging.getLogger(__name__)


def centre_fraction_for(acceleration: float) -> float:
    """fastMRI convention: 0.08 at 4x, 0.04 at 8x, i.e. 0.32 / R (capped at 1)."""
    return min(1.0, 0.32 / acceleration)


def simulate_undersampling(image: np.ndarray, pe_axis: int, acceleration: float,
                           rng: np.random.Generator) -> Degraded:
    """Random Cartesian undersampling by ``acceleration`` along the phase-encode axis, zero-filled."""
    if acceleration < 1:
        raise ValueError(f"acceleration must be at least 1, got {acceleration}")
    n = image.shape[pe_axis]
    centre_frac = centre_fraction_for(acceleration)
    mask = centre_lines(n, centre_frac)
    target = int(round(n / acceleration))
    extra = max(0, target - int(mask.sum()))
    outside = np.flatnonzero(~mask)
    if extra:
        mask[rng.choice(outside, size=min(extra, outside.size), replace=False)] = True
    k = fft2c(image.astype(np.float64)) * along(mask, pe_axis)
    params: dict[str, ParamValue] = {"acceleration": acceleration, "centre_fraction": centre_frac, "pe_axis": pe_axis,
              "lines_kept": int(mask.sum()), "lines_total": n, "reconstruction": "zero-filled magnitude"}
    return Degraded("mr_undersample", np.abs(ifft2c(k)), params)


def simulate_truncation(image: np.ndarray, keep_fraction: float) -> Degraded:
    """Zero all but the central ``keep_fraction`` of k-space along both axes (lower matrix, zero-filled)."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep fraction must be in (0, 1], got {keep_fraction}")
    k = fft2c(image.astype(np.float64))
    for axis in (0, 1):
        k = k * along(centre_lines(image.shape[axis], keep_fraction), axis)
    params: dict[str, ParamValue] = {"keep_fraction": keep_fraction, "matrix": [max(1, int(round(s * keep_fraction)))
                                                         for s in image.shape], "window": "rectangular"}
    return Degraded("mr_truncation", np.abs(ifft2c(k)), params)
