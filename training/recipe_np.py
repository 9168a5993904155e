"""MedIQA's released input recipe (whole slice resized, per-image min-max, no windowing), in numpy.

Training-only: it exists to train and score the "released recipe" comparison row of the evaluation
table on the same data and budget as our model. The agent never runs it; every model it ships uses
``mediqa.preprocess`` (windowed native-resolution crops) instead.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import zoom

logger = logging.getLogger(__name__)


def resize_whole(image: np.ndarray, size: int) -> np.ndarray:
    """[..., H, W] -> [..., size, size], bilinear: the released code resizes the whole slice to 224."""
    h, w = image.shape[-2:]
    factors = [1.0] * (image.ndim - 2) + [size / h, size / w]
    out = zoom(np.asarray(image, dtype=np.float32), factors, order=1, prefilter=False, grid_mode=True,
               mode="nearest")
    return out[..., :size, :size].astype(np.float32)


def minmax_unit(image: np.ndarray, channels: int) -> np.ndarray:
    """[H, W] -> [channels, H, W]: per-image min-max to [-1, 1], the released code's stand-in for raw
    stored values (no rescale, no window), repeated over the model's channels."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    out = (img - lo) / max(hi - lo, 1e-6) * 2.0 - 1.0
    return np.repeat(np.expand_dims(out, -3), channels, axis=-3).astype(np.float32)


def recipe_input(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """One stored slice [H, W] in physical units -> [channels, size, size], the recipe's single input."""
    return minmax_unit(resize_whole(image, size), channels)
