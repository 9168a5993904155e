"""A clinical full-dose scan of a noise-free slice: projection-domain noise at a body-size-dependent flux.

Clean anatomy (the procedural body phantom, the resampled TotalSegmentator volumes) has no scanner noise,
so the dose simulation of ``ct_dose`` (which adds noise *on top of* a source's own full-dose noise) has
nothing to calibrate on. This module gives such a slice the noise of a routine scan first, so that what
the data set calls "full dose" looks like what a console shows for that body at its normal protocol.

Photon counts follow the body. The water-equivalent diameter D_w (AAPM Report 220, 2014) is computed from
the slice; tube current modulation raises the flux for larger patients but only partly (AEC "average"
strength, noise still grows with size: Söderberg & Gunnarsson 2010, Acta Radiol 51:625), so the flux is
``I0_ref * exp(s mu_w (D_w - D_ref))`` with strength ``s`` = 0.5, and the detected counts behind the body
fall as ``exp(-p)``. The routine noise at D_ref sets I0_ref (the body-CT reference noise levels in
``REFERENCE_NOISE_HU``; the model card gives their sources). A per-patient factor varies the protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mediqa.training.degrade.ct_dose import ELECTRONIC_SIGMA, I0_REFERENCE, _noise_sinogram
from mediqa.training.degrade.ct_project import MU_WATER_PER_MM, Projection

log = logging.getLogger(__name__)

# Soft-tissue noise (HU, pixel SD in a uniform region) of a routine adult scan at D_ref with a standard
# soft-tissue kernel: liver/abdomen ~10-12 HU at 5 mm, mediastinum ~12-15 HU (chest protocols run at a
# lower dose), brain ~4-5 HU (head protocols run at ~3-4x the dose of a body scan of the same size).
REFERENCE_NOISE_HU = {"abdomen": 11.0, "pelvis": 11.0, "chest": 13.0, "neck": 9.0, "head": 4.5}
D_REF_MM = 280.0  # a standard-size adult abdomen (water-equivalent diameter)
AEC_STRENGTH = 0.5  # 0: fixed mAs (noise grows as exp(mu D / 2)); 1: constant noise whatever the size
PROTOCOL_SPREAD = (0.85, 1.2)  # per-patient noise factor: protocols and scanners differ
MIN_BODY_PIXELS = 200


@dataclass(frozen=True)
class NativeScan:
    """The noisy full-dose slice and what made it (recorded in the sample's parameters)."""

    image: np.ndarray
    projection: Projection  # line integrals of the clean slice; image_hu is the noisy scan
    water_equivalent_diameter_mm: float
    target_noise_hu: float
    flux: float  # effective photons per bin and view for this geometry


def water_equivalent_diameter_mm(image_hu: np.ndarray, spacing_mm: float) -> float:
    """D_w = 2 sqrt(A_w / pi), A_w = sum over the patient of (HU/1000 + 1) * pixel area (AAPM Report 220)."""
    body = image_hu > -500.0
    if int(body.sum()) < MIN_BODY_PIXELS:
        return 0.0
    area = float(np.sum(np.clip(image_hu[body] / 1000.0 + 1.0, 0.0, None))) * spacing_mm**2
    return float(2.0 * np.sqrt(area / np.pi))


def target_noise_hu(anatomy: str, dw_mm: float, protocol_factor: float = 1.0) -> float:
    """Routine full-dose soft-tissue noise for a patient of water-equivalent diameter ``dw_mm``."""
    ref = REFERENCE_NOISE_HU.get(anatomy, REFERENCE_NOISE_HU["abdomen"])
    # Noise SD ~ 1/sqrt(detected counts) ~ exp(mu D / 2) / sqrt(flux); the AEC cancels a fraction s of it.
    growth = np.exp(0.5 * (1.0 - AEC_STRENGTH) * MU_WATER_PER_MM * (dw_mm - D_REF_MM))
    return float(ref * growth * protocol_factor)


def native_scan(clean_hu: np.ndarray, spacing_mm: float, anatomy: str, n_views: int,
                rng: np.random.Generator) -> NativeScan:
    """The clean slice as a routine full-dose scan: Poisson + electronic noise, ramp FBP, added."""
    proj = Projection.of(clean_hu, spacing_mm, n_views)
    dw = water_equivalent_diameter_mm(clean_hu, spacing_mm)
    target = target_noise_hu(anatomy, dw if dw > 0 else D_REF_MM, float(rng.uniform(*PROTOCOL_SPREAD)))
    tissue = (clean_hu > -150) & (clean_hu < 250)
    if int(tissue.sum()) < MIN_BODY_PIXELS:
        tissue = clean_hu > -500
    probe = proj.fbp_delta_hu(_noise_sinogram(proj.line_integrals, I0_REFERENCE, 0.0, rng))
    probe_sd = float(np.std(probe[tissue])) if tissue.any() else float(np.std(probe))
    # Noise variance scales as 1/flux (the Poisson part dominates at full dose): solve for the flux.
    flux = I0_REFERENCE * (probe_sd / target) ** 2
    electronic = ELECTRONIC_SIGMA * max(1.0, flux / 1.5e5) ** 0.5
    noise = proj.fbp_delta_hu(_noise_sinogram(proj.line_integrals, flux, electronic, rng))
    image = proj.with_delta(noise)
    scanned = Projection(image, proj.spacing_mm, proj.theta_deg, proj.line_integrals)
    log.debug("native scan: D_w %.0f mm, target %.1f HU, flux %.3g", dw, target, flux)
    return NativeScan(image, scanned, dw, target, flux)
