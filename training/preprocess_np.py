"""Stored physical pixels -> model input, in pure numpy (no torch): one implementation for the
trainer, the evaluator and the agent at run time, so a model never sees inputs prepared two ways.

CT: each HU window (centre, width) of the model card becomes one channel, clipped and mapped to
[-1, 1]; the soft-tissue, brain and bone windows together keep noise visible wherever it lives.
MR: intensities have no absolute scale, so [lo, hi] (robust percentiles, the data set's ``norm``)
map to [-1, 1], repeated over the channels. Crops are taken at native resolution: shrinking a
512 slice to the model's input size would average away the noise texture the model has to judge.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from mediqa.agent.scoring.model_card import PROMPT_FIELDS, UNKNOWN, Preprocessing

logger = logging.getLogger(__name__)


def window_ct(hu: np.ndarray, windows: Sequence[Sequence[float]]) -> np.ndarray:
    """HU image [..., H, W] -> float32 [..., len(windows), H, W] in [-1, 1]."""
    hu = np.asarray(hu, dtype=np.float32)
    chans = []
    for centre, width in windows:
        lo = centre - width / 2.0
        chans.append(np.clip((hu - lo) / width, 0.0, 1.0) * 2.0 - 1.0)
    return np.stack(chans, axis=-3).astype(np.float32)


def normalise_mr(image: np.ndarray, lo: float, hi: float, channels: int) -> np.ndarray:
    """MR image [..., H, W] with robust range [lo, hi] -> float32 [..., channels, H, W] in [-1, 1]."""
    img = np.asarray(image, dtype=np.float32)
    span = max(float(hi) - float(lo), 1e-6)
    out = np.clip((img - float(lo)) / span, 0.0, 1.0) * 2.0 - 1.0
    return np.repeat(np.expand_dims(out, -3), channels, axis=-3).astype(np.float32)


def robust_range(image: np.ndarray, percentiles: Sequence[float]) -> tuple[float, float]:
    """The MR ``norm`` of an image or volume: its (p_lo, p_hi) percentiles."""
    lo, hi = np.percentile(np.asarray(image, dtype=np.float32), list(percentiles))
    return float(lo), float(hi)


def to_model_input(image: np.ndarray, modality: str, pre: Preprocessing,
                   norm: Sequence[float] | None = None) -> np.ndarray:
    """One slice or crop [H, W] (or a stack [K, H, W]) in physical units -> [.., C, H, W] float32.

    ``norm`` is the MR range; when absent it is computed from ``image`` with the card's percentiles.
    Any modality other than CT is treated as MR-like (relative intensities).
    """
    if modality == "CT":
        if len(pre.ct_windows) != pre.channels:
            raise ValueError(f"{len(pre.ct_windows)} CT windows for {pre.channels} channels")
        return window_ct(image, pre.ct_windows)
    lo, hi = norm if norm is not None else robust_range(image, pre.mr_percentiles)
    return normalise_mr(image, lo, hi, pre.channels)


def crop_origins(height: int, width: int, crop: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` deterministic crops spread on a grid over the image.

    One crop is centred; more are laid out on the smallest square grid holding them, row-major,
    evenly spaced from edge to edge (2x2 on a 160 image with 96 crops: offsets 0 and 64).
    """
    if height < crop or width < crop:
        raise ValueError(f"image {height}x{width} is smaller than the {crop} crop: pad it first")
    if count == 1:
        return [((height - crop) // 2, (width - crop) // 2)]
    side = int(np.ceil(np.sqrt(count)))
    ys = np.linspace(0, height - crop, side).round().astype(int)
    xs = np.linspace(0, width - crop, side).round().astype(int)
    return [(int(y), int(x)) for y in ys for x in xs][:count]


def grid_crops(image: np.ndarray, crop: int, count: int) -> np.ndarray:
    """[..., H, W] -> [count, ..., crop, crop] at ``crop_origins``; pads with edge values if small."""
    h, w = image.shape[-2:]
    if h < crop or w < crop:
        pad = [(0, 0)] * (image.ndim - 2) + [(0, max(0, crop - h)), (0, max(0, crop - w))]
        image = np.pad(image, pad, mode="edge")
        h, w = image.shape[-2:]
    return np.stack([image[..., y:y + crop, x:x + crop] for y, x in crop_origins(h, w, crop, count)])


def resize_whole(image: np.ndarray, size: int) -> np.ndarray:
    """[..., H, W] -> [..., size, size] by area averaging / bilinear: MedIQA's released recipe
    (whole slice resized), kept only for the comparison row of the evaluation table."""
    from scipy.ndimage import zoom

    h, w = image.shape[-2:]
    factors = [1.0] * (image.ndim - 2) + [size / h, size / w]
    out = zoom(np.asarray(image, dtype=np.float32), factors, order=1, prefilter=False, grid_mode=True,
               mode="nearest")
    return out[..., :size, :size].astype(np.float32)


def prompt_vector(vocabulary: Mapping[str, Sequence[str]], attributes: Mapping[str, str | None]) -> np.ndarray:
    """Attribute values -> int64 [4] indices in ``PROMPT_FIELDS`` order; unseen values -> ``unknown``."""
    out = np.zeros(len(PROMPT_FIELDS), dtype=np.int64)
    for i, attr in enumerate(PROMPT_FIELDS):
        vocab = list(vocabulary[attr])
        value = attributes.get(attr)
        out[i] = vocab.index(value) if value in vocab else vocab.index(UNKNOWN)
    return out


def minmax_unit(image: np.ndarray, channels: int) -> np.ndarray:
    """Per-image min-max to [-1, 1] repeated over channels: the no-windowing input of the
    released MedIQA recipe (raw stored values), used only for that comparison row."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    out = (img - lo) / max(hi - lo, 1e-6) * 2.0 - 1.0
    return np.repeat(np.expand_dims(out, -3), channels, axis=-3).astype(np.float32)
