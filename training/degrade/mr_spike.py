"""Spike (herringbone) artefact: a few corrupt k-space samples from RF discharges or gradient arcing.

One bad sample at k-space position k adds a plane wave over the whole image: stripes whose orientation and
spacing follow k (Zhang et al. 2001, MRM 46:1016; Jin et al. 2017, MRM 78:1226). Amplitude is given
relative to the k-space peak (the DC term), so the label is independent of scanner scaling.
"""

from __future__ import annotations

import logging

import numpy as np

from mediqa.training.degrade.base import Degraded, ParamValue
from mediqa.training.degrade.kspace import fft2c, ifft2c

log = logging.getLogger(__name__)


def simulate_spike(image: np.ndarray, rng: np.random.Generator, relative_amplitude: float,
                   n_spikes: int = 1, min_radius: float = 0.1) -> Degraded:
    """Add ``n_spikes`` spikes of ``relative_amplitude`` x |k|max at random positions outside the centre.

    ``min_radius`` is the smallest distance from the k-space centre as a fraction of the half-width:
    spikes at the very centre would only change the overall brightness.
    """
    if relative_amplitude < 0 or n_spikes < 0:
        raise ValueError("spike amplitude and count must not be negative")
    k = fft2c(image.astype(np.float64))
    peak = float(np.abs(k).max())
    h, w = image.shape
    spikes: list[dict[str, float]] = []
    while len(spikes) < n_spikes:
        fy, fx = rng.uniform(-1.0, 1.0, size=2)
        if np.hypot(fy, fx) < min_radius or np.hypot(fy, fx) > 1.0:
            continue
        row = int(np.clip(round(h / 2 + fy * (h / 2 - 1)), 0, h - 1))
        col = int(np.clip(round(w / 2 + fx * (w / 2 - 1)), 0, w - 1))
        phase = float(rng.uniform(0.0, 2.0 * np.pi))
        k[row, col] += relative_amplitude * peak * np.exp(1j * phase)
        spikes.append({"row": row, "col": col, "phase": phase})
    params: dict[str, ParamValue] = {"relative_amplitude": relative_amplitude, "n_spikes": n_spikes, "k_peak": peak,
              "min_radius": min_radius, "spikes": spikes}
    return Degraded("mr_spike", np.abs(ifft2c(k)), params)
