"""Periodic ghosting: every n-th phase-encode line scaled (e.g. EPI odd/even mismatch, periodic motion).

A k-space modulation with period n along the phase-encode axis convolves the image with replicas shifted by
FOV/n along that axis (Nyquist ghosts for n = 2; Haacke et al., "Magnetic Resonance Imaging", ch. 15).
The ghost amplitude relative to the object is about ``intensity / n``.
"""

from __future__ import annotations

import logging

import numpy as np

from mediqa.training.degrade.base import Degraded
from mediqa.training.degrade.kspace import along, fft2c, ifft2c

log = logging.getLogger(__name__)


def simulate_ghost(image: np.ndarray, pe_axis: int, intensity: float, period: int = 2,
                   offset: int = 0) -> Degraded:
    """Multiply every ``period``-th phase-encode line (from ``offset``) by ``1 - intensity``."""
    if not 0 <= intensity <= 1:
        raise ValueError(f"ghost intensity must be in [0, 1], got {intensity}")
    if period < 2:
        raise ValueError(f"ghost period must be at least 2, got {period}")
    n_lines = image.shape[pe_axis]
    scale = np.ones(n_lines)
    scale[offset % period::period] = 1.0 - intensity
    k = fft2c(image.astype(np.float64)) * along(scale, pe_axis)
    params = {"intensity": intensity, "period": period, "offset": offset % period, "pe_axis": pe_axis,
              "ghost_shift_fraction_of_fov": 1.0 / period}
    return Degraded("mr_ghost", np.abs(ifft2c(k)), params)
