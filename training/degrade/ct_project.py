"""Parallel-beam projection of a CT slice: HU -> attenuation line integrals and back (FBP).

Low-dose and sparse-view artefacts arise in the projection domain, so they are simulated there
(Zeng et al. 2015, "A simple low-dose x-ray CT simulation from high-dose scan", IEEE TNS 62:2226).
We use skimage's parallel-beam ``radon``/``iradon`` (ramp filter): the clinical fan beam is
rebinned to parallel rays before FBP on most scanners, and the noise texture (ramp-filtered,
correlated, streaky under photon starvation) is what the model must learn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Linear attenuation of water at ~70 keV effective energy (NIST XCOM), per mm.
MU_WATER_PER_MM = 0.0192
AIR_HU = -1000.0
OUTSIDE_FOV_HU = -1024.5  # stored padding (-2048, -3024...) is not tissue; real air sits near -1000


def hu_to_mu(image_hu: np.ndarray) -> np.ndarray:
    """HU -> linear attenuation per mm; padding below air (-2048, -3024) is air."""
    return MU_WATER_PER_MM * (1.0 + np.maximum(image_hu.astype(np.float64), AIR_HU) / 1000.0)


def delta_mu_to_hu(delta_mu: np.ndarray) -> np.ndarray:
    """A perturbation of attenuation (noise, streaks) in HU: the inverse of ``hu_to_mu`` without its offset."""
    return 1000.0 * delta_mu / MU_WATER_PER_MM


@dataclass(frozen=True)
class Projection:
    """Noise-free line integrals ``p`` (unitless) of one slice over ``n_views`` angles in [0, 180)."""

    image_hu: np.ndarray
    spacing_mm: float
    theta_deg: np.ndarray
    line_integrals: np.ndarray  # [detector bins, views]

    @property
    def n_views(self) -> int:
        return int(self.theta_deg.size)

    @classmethod
    def of(cls, image_hu: np.ndarray, spacing_mm: float, n_views: int) -> Projection:
        """Forward-project once; every dose level and view subset of this slice reuses it."""
        from skimage.transform import radon

        if image_hu.ndim != 2:
            raise ValueError(f"expected a 2D slice, got shape {image_hu.shape}")
        if spacing_mm <= 0:
            raise ValueError(f"pixel spacing must be positive, got {spacing_mm}")
        theta = np.linspace(0.0, 180.0, n_views, endpoint=False)
        # radon sums pixel values along each ray: times the pixel size this is the line integral.
        sino = radon(hu_to_mu(image_hu), theta=theta, circle=False) * spacing_mm
        log.debug("projected %s slice over %d views, max p %.2f", image_hu.shape, n_views, sino.max())
        return cls(np.asarray(image_hu, dtype=np.float64), float(spacing_mm), theta, sino)

    def with_delta(self, delta_hu: np.ndarray) -> np.ndarray:
        """Original + a perturbation, leaving padding outside the scanner's field of view as stored."""
        return np.where(self.image_hu < OUTSIDE_FOV_HU, self.image_hu, self.image_hu + delta_hu)

    def fbp_delta_hu(self, sinogram: np.ndarray, view_index: np.ndarray | None = None) -> np.ndarray:
        """FBP of a *perturbation* sinogram (noise, view-subset difference), in HU.

        FBP is linear, so the noise image can be reconstructed alone and added to the original without
        the slight blur of a full radon/iradon round trip.
        """
        return delta_mu_to_hu(self._fbp_mu(sinogram, view_index))

    def _fbp_mu(self, sinogram: np.ndarray, view_index: np.ndarray | None) -> np.ndarray:
        from skimage.transform import iradon

        theta = self.theta_deg if view_index is None else self.theta_deg[view_index]
        size = self.image_hu.shape
        mu = iradon(sinogram / self.spacing_mm, theta=theta, output_size=max(size), filter_name="ramp",
                    circle=False)
        return _centre(mu, size)


def _centre(image: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """iradon reconstructs a square; cut the original (possibly rectangular) slice back out."""
    r0 = (image.shape[0] - size[0]) // 2
    c0 = (image.shape[1] - size[1]) // 2
    return image[r0:r0 + size[0], c0:c0 + size[1]]
