"""All degradations of one CT slice: dose levels, image-domain noise, sparse views, kernel blur and thick slabs.

The forward projection (the expensive step) is done once per slice and shared by every dose level and
view count. Dose needs a noise measurement in soft tissue (the global noise level of ``mediqa.measures``,
the measure the agent's classical scorer makes): slices without enough soft tissue keep their other
degradations and log why dose (and the image-domain noise, whose dose label needs the same measurement)
was skipped.

Clean-anatomy sources (the body phantom, resampled NIfTI volumes) first get a routine full-dose scan's
noise at a body-size-dependent flux (``degrade/ct_native``); that noisy slice is then the source, and the
reference of every proxy label, exactly as a real source's own full-dose slice is: so a body slice at its
routine noise is labelled good, not "noisier than a head CT". They get no thick-slab level (their
neighbours are other patients, or 3 mm voxels).
"""

from __future__ import annotations

import logging

import numpy as np

from mediqa.measures import global_noise_level
from mediqa.training.datagen.config import DataConfig
from mediqa.training.datagen.made import Made, rng_for
from mediqa.training.datagen.sources import SourceSeries
from mediqa.training.degrade.ct_blur import simulate_kernel_blur, simulate_thick_slice
from mediqa.training.degrade.ct_dose import calibrate_i0, simulate_dose
from mediqa.training.degrade.ct_native import native_scan
from mediqa.training.degrade.ct_noise import simulate_image_noise
from mediqa.training.degrade.ct_project import Projection
from mediqa.training.degrade.ct_sparse import SparseViews

log = logging.getLogger(__name__)


def ct_slice_degradations(src: SourceSeries, k: int, cfg: DataConfig) -> Made:
    image = src.volume[k].astype(np.float64)
    spacing = src.spacing_mm[0]
    if src.clean_anatomy:
        scan = native_scan(image, spacing, src.spec.anatomy, cfg.ct.projection_views,
                           rng_for(cfg, src, k, "ct_native", 0))
        image, proj = scan.image, scan.projection
    else:
        proj = Projection.of(image, spacing, cfg.ct.projection_views)
    made: Made = []

    def measure(img: np.ndarray) -> float:
        return global_noise_level(img[None], spacing)

    try:
        calib = calibrate_i0(proj, measure, rng_for(cfg, src, k, "ct_dose_calibration", 0))
    except ValueError as exc:
        log.warning("%s slice %d: dose levels skipped (%s)", src.spec.name, k, exc)
        calib = None
    if calib is not None:
        for level, dose in enumerate(cfg.ct.dose_fractions):
            made.append((k, level, simulate_dose(proj, dose, calib, rng_for(cfg, src, k, "ct_dose", level)), image))
        for level, sigma in enumerate(cfg.ct.image_noise_hu):
            rng = rng_for(cfg, src, k, "ct_noise", level)
            corr = float(rng.uniform(0.0, cfg.ct.image_noise_max_correlation_mm))
            made.append((k, level, simulate_image_noise(image, sigma, calib.source_noise_hu, src.spacing_mm, corr, rng),
                         image))
    sparse = SparseViews(proj)
    for level, views in enumerate(cfg.ct.sparse_views):
        made.append((k, level, sparse.simulate(views), image))
    for level, fwhm in enumerate(cfg.ct.blur_fwhm_mm):
        made.append((k, level, simulate_kernel_blur(image, fwhm, src.spacing_mm), image))
    step = src.slice_step_mm
    if step is not None and step <= cfg.ct.slab_max_step_mm and not src.clean_anatomy:
        for level, n in enumerate(cfg.ct.slab_slices):
            half = n // 2
            if k - half >= 0 and k + half < src.volume.shape[0]:
                slab = simulate_thick_slice(src.volume[k - half:k + half + 1], step)
                made.append((k, len(cfg.ct.blur_fwhm_mm) + level, slab, image))
    return made
