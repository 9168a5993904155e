"""Salient-slice selection: which K slices of a series the scorer looks at, and how much each counts.

MedIQA's released code scores fixed indices of files sorted by name. Here every slice gets a cheap
saliency (body content and structure on a max-pooled ~64 px copy) and the best slice of each of
K equal parts of the covered anatomy is chosen, so the choice carries content and stays spread
over the volume. The released rule stays available (``method="fixed"``) for comparisons.

Saliency values are only compared within one series: CT values are in HU terms (absolute), MR
values are in the series' own intensity units (MR has no absolute scale, but one series shares it).

Bounded and deterministic. A series of up to ``CANDIDATES_MAX`` slices competes with all of them; a
longer one with ``CANDIDATES_MAX`` slices evenly strided over it (``candidate_indices``, a function of the
slice count only). So the choice depends on the files alone, never on which slices the agent happened to
compute as they arrived, and a 2,000-slice series costs at most ``CANDIDATES_MAX`` downsampled decodes at
completion (``saliency_from_store`` decodes only the candidates the store lacks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from mediqa.agent.dicom.decode import SliceKey, decode_downsampled, decode_record_downsampled, downsample, slice_key
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.select.selection import Selection

log = logging.getLogger(__name__)

METHODS = ("salient", "fixed")
TARGET_SIDE = 64  # downsampled side: enough to see body and structure, ~50 us per slice
CT_BODY_HU = -300.0  # tissue above this; air, lung-free background and foam pads below
CT_EDGE_HU = 100.0  # mean gradient (HU per downsampled pixel) that counts as "full structure"
EDGE_FRACTION = 0.1  # leading/trailing slices below this fraction of the peak saliency are empty
CANDIDATES_MAX = 64  # slices of a long series whose saliency competes (evenly strided): 7 parts x ~9 each
_OPEN = np.ones((3, 3), bool)


def slice_saliency(slice2d: np.ndarray, modality: str) -> float:
    """Cheap content score of one slice in physical units (HU for CT); higher = more worth scoring.

    Works on a max-pooled ~64 px copy (idempotent on an already downsampled one), so the tracker
    can run it on every instance as it arrives. CT: fraction of the slice that is body (holes
    filled, then an opening removes the thin table and cables), scaled by edge energy inside the
    body. MR: mean intensity plus mean gradient, in the series' own units.
    """
    img = np.asarray(downsample(np.asarray(slice2d), TARGET_SIDE), dtype=np.float32)
    if img.size == 0 or not np.isfinite(img).any():
        return 0.0
    img = np.nan_to_num(img)
    gy, gx = np.gradient(img)
    grad = np.hypot(gx, gy)
    if modality.upper() == "CT":
        # Fill holes: lungs, sinuses and an empty phantom skull are inside the body even though they are air.
        # Close first so a thin skull or rib cage still encloses its interior once downsampled.
        closed = ndimage.binary_closing(img > CT_BODY_HU, structure=_OPEN)
        body = ndimage.binary_opening(ndimage.binary_fill_holes(closed), structure=_OPEN)
        frac = float(body.mean())
        if frac == 0.0:
            return 0.0
        structure = min(1.0, float(grad[body].mean()) / CT_EDGE_HU)
        return frac * (0.5 + 0.5 * structure)
    pos = np.clip(img, 0.0, None)
    return float(pos.mean() + grad.mean())


def candidate_indices(n: int, limit: int = CANDIDATES_MAX) -> np.ndarray:
    """The slices (layout indices, ascending) whose saliency competes in a series of ``n`` slices.

    All of them up to ``limit``; beyond, ``limit`` slices evenly strided from the first to the last. A
    function of ``n`` alone: the same files give the same candidates, whatever was computed before.
    """
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(np.int64))


def saliency_for_layout(layout: SeriesLayout, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Saliency of every slice (or of ``indices`` only; NaN elsewhere), decoding each file once and
    downsampling before any arithmetic.

    Used when the tracker did not precompute values as instances arrived.
    """
    wanted = np.arange(layout.n_slices) if indices is None else np.asarray(indices, dtype=np.int64)
    values = np.full(layout.n_slices, np.nan)
    images = decode_downsampled(layout, [int(i) for i in wanted], TARGET_SIDE)
    values[wanted] = [slice_saliency(img, layout.modality) for img in images]
    return values


def record_saliency(record: InstanceRecord) -> dict[SliceKey, float]:
    """Saliency of every slice in one arriving instance; the tracker stores these as files come in."""
    images = decode_record_downsampled(record, TARGET_SIDE)
    return {key: slice_saliency(img, record.modality) for key, img in images.items()}


def saliency_from_store(layout: SeriesLayout, store: Mapping[SliceKey, float]) -> np.ndarray:
    """Map stored per-instance values onto the layout; decode only the candidate slices the store lacks.

    Slices that are no candidate (``candidate_indices``) keep their stored value or NaN: selection does
    not look at them, so at most ``CANDIDATES_MAX`` slices are decoded here, however long the series.
    """
    values = np.array([store.get(slice_key(ref), np.nan) for ref in layout.slices], dtype=np.float64)
    candidates = candidate_indices(layout.n_slices)
    missing = candidates[~np.isfinite(values[candidates])]
    if len(missing):
        log.debug("series %s: computing saliency for %d slices not seen on arrival", layout.series_key, len(missing))
        images = decode_downsampled(layout, [int(i) for i in missing], TARGET_SIDE)
        values[missing] = [slice_saliency(img, layout.modality) for img in images]
    return values


def fixed_indices(n: int) -> list[int]:
    """MedIQA's released rule ``[0, m-2s, m-s, m, m+s, m+2s, n-1]``, m = n//2, s = n//6, deduplicated."""
    if n <= 0:
        return []
    m, s = n // 2, n // 6
    raw = [0, m - 2 * s, m - s, m, m + s, m + 2 * s, n - 1]
    return sorted({min(n - 1, max(0, i)) for i in raw})


def select_slices(layout: SeriesLayout, k: int = 7, method: str = "salient",
                  saliency: np.ndarray | Sequence[float] | None = None) -> Selection:
    """Choose up to ``k`` slices in anatomical order with weights that sum to 1.

    ``saliency`` (one value per layout slice, e.g. collected by the tracker) avoids any decoding;
    without it the salient method decodes a downsampled copy of every candidate slice. Only candidates
    compete (``candidate_indices``: every slice up to ``CANDIDATES_MAX``), and ``Selection.saliency`` holds
    what competed (0 for the other slices). A 2D image or a series shorter than ``k`` yields fewer slices,
    never duplicates.
    """
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; use one of {METHODS}")
    if k < 1:
        raise ValueError("k must be at least 1")
    n = layout.n_slices
    sal = None if saliency is None else np.asarray(saliency, dtype=np.float64)
    if sal is not None and sal.shape != (n,):
        raise ValueError(f"saliency has {sal.shape} values, layout has {n} slices")
    if method == "fixed":
        idx = fixed_indices(n)
        weights = np.full(len(idx), 1.0 / len(idx)) if idx else np.zeros(0)
        return _selection(idx, weights, sal, "fixed")
    candidates = candidate_indices(n)
    if sal is None:
        sal = saliency_for_layout(layout, candidates)
    competing = np.zeros(n, dtype=np.float64)
    competing[candidates] = sal[candidates]
    sal = np.where(np.isfinite(competing), np.clip(competing, 0.0, None), 0.0)
    idx = salient_indices(sal, [s.position for s in layout.slices], k)
    return _selection(idx, _weights(sal[idx]), sal, "salient")


def salient_indices(sal: np.ndarray, positions: Sequence[float], k: int) -> list[int]:
    """Best slice in each of ``k`` equal parts (in mm) of the span between the first and last non-empty slice.

    Only the middle of each part competes, so the chosen slices stay spread even when saliency
    peaks at a border between two parts.
    """
    n = len(sal)
    if n == 0:
        return []
    peak = float(sal.max())
    nonempty = np.flatnonzero(sal > EDGE_FRACTION * peak) if peak > 0 else np.arange(n)
    lo, hi = int(nonempty[0]), int(nonempty[-1])
    if hi - lo + 1 <= k:
        return [int(i) for i in nonempty]  # short series: every slice with content, no duplicates
    span = np.arange(lo, hi + 1)
    pos = np.asarray(positions, dtype=np.float64)[span]
    parts = _parts_by_position(pos, k)
    if parts is None:  # uneven spacing left a part empty: fall back to equal parts by index
        parts = np.array_split(np.arange(len(span)), k)
    chosen = [int(span[c[np.argmax(sal[span[c]])]]) for c in map(_core, parts)]
    return sorted(chosen)


def _core(part: np.ndarray) -> np.ndarray:
    """The middle 60% of a part: two neighbouring parts never both pick slices at their shared border."""
    if len(part) < 3:
        return part
    cut = int(round(0.2 * len(part)))
    return part[cut:len(part) - cut] if len(part) - 2 * cut > 0 else part


def _parts_by_position(pos: np.ndarray, k: int) -> list[np.ndarray] | None:
    extent = pos[-1] - pos[0]
    if abs(extent) < 1e-6:
        return None
    bins = np.minimum(((pos - pos[0]) / extent * k).astype(int), k - 1)
    parts = [np.flatnonzero(bins == b) for b in range(k)]
    return parts if all(len(p) for p in parts) else None


def _weights(values: np.ndarray) -> np.ndarray:
    """Importance proportional to saliency, floored so no chosen slice is ignored entirely."""
    if values.size == 0:
        return values
    floor = 0.05 * float(values.max()) if values.max() > 0 else 1.0
    w = values + floor
    return w / w.sum()


def _selection(idx: list[int], weights: np.ndarray, sal: np.ndarray | None, method: str) -> Selection:
    log.debug("selected %s by %s", idx, method)
    return Selection(
        indices=tuple(int(i) for i in idx),
        weights=tuple(float(w) for w in weights),
        saliency=() if sal is None else tuple(float(v) for v in sal),
        method=method,
    )
