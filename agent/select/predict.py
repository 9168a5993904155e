"""Which slices a series that is still arriving will choose once complete, when it announced its count.

Selection (``saliency.select_slices``) depends on the whole series: the candidates are strided over its
final slice count, and the parts are cut over the span it covers. While the last files of a series that
announced ``expected`` slices arrive, that choice can already be predicted when the arrived slices are
numbered 1..``expected`` (InstanceNumber) and the numbers run along the slice positions (as consoles write
a stack): each arrived slice has its place in the complete stack and the missing ones lie at the positions
the arrived ones' spacing gives. The same ``salient_indices`` then picks the slices, once with a missing
candidate as salient as the nearest arrived one and once with it empty (either may move the ends of the
span the parts are cut over), and the arrived slices of both choices are returned.

A prediction only says what to pass to the model early (``loop/early.py``): the result is still computed
from the complete series, and model outputs are reused only for slices whose input is exactly the same
(``scoring/slice_outputs.py``). A wrong prediction costs a model pass, never a wrong result.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mediqa.agent.dicom.decode import SliceKey, decode_downsampled, slice_key
from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.select.saliency import (
    TARGET_SIDE,
    candidate_indices,
    fixed_indices,
    salient_indices,
    slice_saliency,
)


def likely_chosen(layout: SeriesLayout, expected: int, k: int, method: str = "salient",
                  stored: Mapping[SliceKey, float] | None = None) -> list[int] | None:
    """Indices into ``layout`` (the arrived slices) of those the complete series will likely choose.

    None when no prediction holds: not fewer slices than ``expected``, not one slice per single-frame
    file, InstanceNumbers missing, repeated, beyond 1..``expected`` or not running along the positions.
    Saliency of an arrived candidate missing from ``stored`` is computed here (a downsampled decode each).
    """
    n_now = layout.n_slices
    if not 2 <= n_now < expected or any(ref.frame is not None or ref.tiles > 1 for ref in layout.slices):
        return None
    numbers = np.array([ref.instance_number or 0 for ref in layout.slices], dtype=np.int64)
    if numbers.min() < 1 or numbers.max() > expected or len(set(numbers.tolist())) != n_now:
        return None
    steps = np.diff(numbers)
    if np.all(steps > 0):
        final = numbers - 1  # the slice's place in the complete stack: InstanceNumber runs with the positions
    elif np.all(steps < 0):
        final = expected - numbers  # ... against them
    else:
        return None
    chosen = fixed_indices(expected) if method == "fixed" else _salient(layout, expected, k, final, stored or {})
    place = {int(f): i for i, f in enumerate(final)}
    return [place[i] for i in chosen if i in place]


def _salient(layout: SeriesLayout, expected: int, k: int, final: np.ndarray,
             stored: Mapping[SliceKey, float]) -> list[int]:
    """``salient_indices`` over the complete stack: arrived slices at their places, the missing ones at the
    positions the arrived ones' spacing gives; a missing candidate as salient as the nearest arrived one, and
    again as an empty slice (the union of both choices: at most 2 ``k`` slices)."""
    pos_now = np.array([ref.position for ref in layout.slices], dtype=np.float64)
    slope, origin = np.polyfit(final.astype(np.float64), pos_now, 1)
    positions = origin + slope * np.arange(expected, dtype=np.float64)
    positions[final] = pos_now
    candidates = candidate_indices(expected)
    arrived = np.zeros(expected, dtype=bool)
    arrived[final] = True
    values = np.full(expected, np.nan)
    where = {int(f): i for i, f in enumerate(final)}
    for f in candidates[arrived[candidates]]:
        values[f] = stored.get(slice_key(layout.slices[where[int(f)]]), np.nan)
    lacking = [int(f) for f in candidates if arrived[f] and not np.isfinite(values[f])]
    if lacking:
        images = decode_downsampled(layout, [where[f] for f in lacking], TARGET_SIDE)
        values[lacking] = [slice_saliency(img, layout.modality) for img in images]
    known = candidates[arrived[candidates]]
    chosen: set[int] = set()
    for missing_empty in (False, True):  # either guess may move the span's ends: the slices of both are passed
        guess = values.copy()
        for f in candidates[~arrived[candidates]]:
            guess[f] = 0.0 if missing_empty or not len(known) else values[known[np.argmin(np.abs(known - f))]]
        competing = np.zeros(expected)
        competing[candidates] = guess[candidates]  # as select_slices: only candidates compete
        competing = np.where(np.isfinite(competing), np.clip(competing, 0.0, None), 0.0)
        chosen.update(salient_indices(competing, positions.tolist(), k))
    return sorted(chosen)
