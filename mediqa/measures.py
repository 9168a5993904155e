"""Physical image measures that the agent's classical scorer and the training data generator share.

CT global noise level (Christianson et al., Radiology 2015): the standard deviation in a ~6 mm kernel is
computed at every soft-tissue pixel (0..150 HU) and the mode of the histogram of those local SDs is the
slice's noise; the series' noise is the mean over slices. The classical scorer maps it to a score; the
generator calibrates its CT dose flux and labels image noise with it. Part of the contract floor (one
copy, imported by both): the data set version digests this file too (``training/datagen/writer.py``),
so a change to the measure gives a new data set version.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SOFT_TISSUE_HU = (0.0, 150.0)
GNL_KERNEL_MM = 6.0
MIN_TISSUE_PIXELS = 200


def slice_noise_hu(slice_hu: np.ndarray, pixel_spacing_mm: float | None = None) -> float | None:
    """Global noise level of one CT slice in HU, or None where there is too little soft tissue."""
    spacing = pixel_spacing_mm or 0.7
    size = max(3, int(round(GNL_KERNEL_MM / spacing)) | 1)
    img = slice_hu.astype(np.float64)
    mean = ndimage.uniform_filter(img, size)
    sq = ndimage.uniform_filter(img * img, size)
    local_sd = np.sqrt(np.clip(sq - mean * mean, 0.0, None))
    lo, hi = SOFT_TISSUE_HU
    # Soft tissue judged on the kernel mean, not on single pixels, so heavy noise does not erase the
    # mask; a one-kernel erosion keeps bone and air edges out of the local SD.
    tissue = ndimage.binary_erosion((mean >= lo) & (mean <= hi), iterations=max(1, size // 2))
    values = local_sd[tissue]
    if values.size < MIN_TISSUE_PIXELS:
        return None
    hist, edges = np.histogram(values, bins=200, range=(0.0, float(np.percentile(values, 99)) + 1e-6))
    peak = int(np.argmax(ndimage.uniform_filter1d(hist.astype(float), 5)))
    return float((edges[peak] + edges[peak + 1]) / 2)


def global_noise_level(slices_hu: np.ndarray, pixel_spacing_mm: float | None = None) -> float:
    """Mean of the per-slice noise levels (HU). NaN when no slice has enough soft tissue."""
    levels = [slice_noise_hu(s, pixel_spacing_mm) for s in np.asarray(slices_hu)]
    found = [v for v in levels if v is not None]
    return float(np.mean(found)) if found else float("nan")
