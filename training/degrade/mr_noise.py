"""Rician noise at a target SNR, after measuring the source's own noise in its background.

A magnitude image is |M + n1 + i n2| with n1, n2 ~ N(0, sigma^2) (Gudbjartsson & Patz 1995, MRM 34:910).
In air (M = 0) this is Rayleigh: mean sigma*sqrt(pi/2), std sigma*sqrt(2 - pi/2) ~ 0.655 sigma, and
E[M^2] = 2 sigma^2, which gives the source's sigma from its background. Independent Gaussian noise adds in
quadrature, so reaching a total sigma_t from a source with sigma_0 needs sigma_add^2 = sigma_t^2 - sigma_0^2;
a target noisier-than-source is the only direction we can go. SNR = mean foreground signal / sigma.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mediqa.training.degrade.base import Degraded

log = logging.getLogger(__name__)

RAYLEIGH_MEAN = float(np.sqrt(np.pi / 2.0))  # background mean / sigma
RAYLEIGH_STD = float(np.sqrt(2.0 - np.pi / 2.0))  # background std / sigma


@dataclass(frozen=True)
class NoiseEstimate:
    sigma: float  # Gaussian sigma of each channel; 0 when the background was masked to zero
    signal: float  # mean foreground intensity
    background_pixels: int

    @property
    def snr(self) -> float:
        return self.signal / self.sigma if self.sigma > 0 else float("inf")


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Object mask on a lightly smoothed image, holes filled.

    Threshold: 10% of the robust maximum, raised to 2.5x the air level seen along the image border when
    the noise is strong (at low SNR, Rayleigh air alone exceeds a fixed fraction of the maximum).
    """
    smooth = ndimage.gaussian_filter(image.astype(np.float64), 2.0)
    hi = float(np.percentile(smooth, 99.5))
    strip = max(2, min(image.shape) // 20)
    border = np.concatenate([smooth[:strip].ravel(), smooth[-strip:].ravel(), smooth[:, :strip].ravel(),
                             smooth[:, -strip:].ravel()])
    threshold = max(0.1 * hi, 2.5 * float(np.percentile(border, 25)))
    if hi <= 0:
        return np.zeros(image.shape, dtype=bool)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(smooth > threshold, iterations=2))
    return np.asarray(mask, dtype=bool)


def estimate_noise(image: np.ndarray) -> NoiseEstimate:
    """sigma from the background (E[M^2] = 2 sigma^2), signal from the foreground."""
    fg = foreground_mask(image)
    bg = ~ndimage.binary_dilation(fg, iterations=max(2, min(image.shape) // 32))
    values = image[bg].astype(np.float64)
    signal = float(image[fg].mean()) if fg.any() else float(image.mean())
    if values.size < 64 or not np.any(values > 0):
        return NoiseEstimate(0.0, signal, int(values.size))
    # Drop stray bright pixels (labels, ghosts) that would inflate the background moment.
    values = values[values < np.percentile(values, 99)]
    sigma = float(np.sqrt(np.mean(values**2) / 2.0))
    return NoiseEstimate(sigma, signal, int(values.size))


def simulate_snr(image: np.ndarray, target_snr: float, rng: np.random.Generator,
                 source: NoiseEstimate | None = None) -> Degraded | None:
    """Rician magnitude at ``target_snr``; ``None`` when the source is already noisier than that."""
    if target_snr <= 0:
        raise ValueError(f"target SNR must be positive, got {target_snr}")
    est = source or estimate_noise(image)
    sigma_t = est.signal / target_snr
    if sigma_t <= est.sigma:
        log.debug("target SNR %.1f above the source's %.1f: level skipped", target_snr, est.snr)
        return None
    sigma_add = float(np.sqrt(sigma_t**2 - est.sigma**2))
    re = image.astype(np.float64) + rng.normal(0.0, sigma_add, image.shape)
    im = rng.normal(0.0, sigma_add, image.shape)
    params = {"target_snr": target_snr, "sigma_total": sigma_t, "sigma_added": sigma_add,
              "source_sigma": est.sigma, "source_snr": est.snr if np.isfinite(est.snr) else None,
              "signal": est.signal, "model": "Rician (complex Gaussian, magnitude)"}
    return Degraded("mr_noise", np.hypot(re, im), params)
