"""One stored sample: crop the degraded slice, compute its labels, describe it for the manifest.

Labels come from the degradation's own parameters (exact) and from the full-reference proxy comparison
with the clean slice on the clinical window, capped by the severity ceiling of those parameters
(labels/severity.py); nothing is estimated after the fact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mediqa.training.datagen.sources import SourceSeries
from mediqa.training.degrade.base import Degraded
from mediqa.training.labels.heads import head_labels
from mediqa.training.labels.proxy import ProxyMapping, clinical_window, proxy_metric
from mediqa.training.labels.severity import capped_quality

log = logging.getLogger(__name__)

MR_NORM_PERCENTILES = (0.5, 99.5)
# Padding of slices smaller than the stored crop must read as "nothing": air in CT (0 HU would be a band
# of water around the image, which the model would learn as content), background in MR.
PAD_FILL = {"CT": -1000.0, "MR": 0.0}


@dataclass(frozen=True)
class Sample:
    """A finished sample: crops plus its manifest entry (``index`` and ``split`` are set by the writer)."""

    meta: dict[str, Any]
    image: np.ndarray  # float32 [S, S]
    clean: np.ndarray  # float32 [S, S]


def centre_crop(image: np.ndarray, size: int, fill: float = 0.0) -> tuple[np.ndarray, list[list[int]] | None]:
    """Centre crop to ``size``; pad the sides that are shorter with ``fill`` (the padding is returned)."""
    out = np.asarray(image, dtype=np.float32)
    pad: list[list[int]] = []
    for axis, n in enumerate(out.shape):
        if n >= size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
            pad.append([0, 0])
        else:
            before = (size - n) // 2
            pad.append([before, size - n - before])
    if any(p != [0, 0] for p in pad):
        out = np.pad(out, pad, mode="constant", constant_values=fill)
        return np.ascontiguousarray(out), pad
    return np.ascontiguousarray(out), None


def make_sample(src: SourceSeries, slice_index: int, level: int, degraded: Degraded, clean: np.ndarray,
                crop_size: int, mapping: ProxyMapping) -> Sample:
    """Crop, label and describe one degraded slice of ``src``."""
    fill = PAD_FILL[src.modality]
    image, pad = centre_crop(degraded.image, crop_size, fill)
    clean_crop, _ = centre_crop(clean, crop_size, fill)
    window = clinical_window(src.modality, src.spec.anatomy, clean_crop, src.window)
    metric = proxy_metric(clean_crop, image, window)
    params = degraded.plain_params()
    labels = head_labels(src.modality, degraded.kind, params)
    quality, ceiling = capped_quality(mapping(metric), degraded.kind, labels)
    meta: dict[str, Any] = {
        "id": f"{src.spec.name}-z{slice_index:03d}-{degraded.kind}-{level}",
        "source": src.source_path,
        "source_name": src.spec.name,
        "vendor": src.vendor,
        "series_key": src.series_key,
        "group": src.spec.group_id,
        "slice": slice_index,
        "modality": src.modality,
        "prompt": {"dimension": src.dimension, "modality": src.modality, "anatomy": src.spec.anatomy,
                   "image_type": src.spec.image_type},
        "degradation": {"type": degraded.kind, "level": level, "params": params},
        "labels": labels,
        "quality": quality,
        "quality_ceiling": ceiling,
        "quality_metric": round(metric, 6),
        "window": [round(float(w), 3) for w in window],
        "norm": _norm(src.modality, degraded.image),
        "pixel_spacing_mm": [round(s, 6) for s in src.spacing_mm],
    }
    if pad is not None:
        meta["pad"] = pad
    return Sample(meta, image, clean_crop)


def _norm(modality: str, image: np.ndarray) -> list[float] | None:
    if modality != "MR":
        return None
    lo, hi = np.percentile(image, MR_NORM_PERCENTILES)
    return [round(float(lo), 4), round(float(hi), 4)]
