"""The model card's preprocessing contract: physical-unit slices in, model-ready crops out.

One implementation for the agent and for training (training imports ``normalise``/``prepare``), so
the model always sees at run time exactly what it saw when it learned. CT: each HU window of the
card is one channel mapped to [-1, 1]. MR: each slice's own robust percentiles (or a caller-supplied
``mr_norm``) mapped to [-1, 1], repeated over the channels; per slice because training stores each
sample's own percentiles, so the agent and training normalise a slice identically. Crops are taken at
native resolution (shrinking a 512 slice would erase the noise texture the model judges), placed
where the body is, deterministically unless a training ``rng`` asks for random placement.
Raw stored values never reach a model: callers pass slices already rescaled to physical units.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from mediqa.errors import ModelError
from mediqa.model_card import PROMPT_FIELDS, UNKNOWN, ModelCard

log = logging.getLogger(__name__)

CT_TISSUE_HU = -300.0  # crops prefer pixels above this: tissue, not air
MR_TISSUE_LEVEL = -0.8  # on the [-1, 1] scale: 10% of the percentile range above the low percentile
MAX_OVERLAP = 0.25  # deterministic crops of one slice overlap each other by at most this fraction
PAD_VALUE = -1.0  # padding reads as "nothing" (air, background) on every channel


class CropPos(NamedTuple):
    slice: int  # index into the K slices given
    y: int  # top-left corner on the (padded) slice
    x: int


def mr_norm_for(image: np.ndarray, card: ModelCard) -> tuple[float, float]:
    """(lo, hi) = the card's MR percentiles of one slice (robust to a few hot pixels)."""
    lo_p, hi_p = card.preprocessing.mr_percentiles
    lo, hi = np.percentile(np.asarray(image, dtype=np.float32), [lo_p, hi_p])
    return float(lo), float(hi)


def normalise(slices: np.ndarray, modality: str, card: ModelCard,
              mr_norm: tuple[float, float] | None = None) -> np.ndarray:
    """[K, H, W] physical units -> float32 [K, C, H, W] in [-1, 1] (C = card.preprocessing.channels)."""
    pre = card.preprocessing
    x = np.asarray(slices, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected slices [K, H, W], got shape {x.shape}")
    if len(pre.ct_windows) != pre.channels:
        raise ModelError(f"model card has {len(pre.ct_windows)} CT windows but {pre.channels} channels",
                         "re-export the model with one CT window per channel")
    modality = modality.upper()
    if modality == "CT":
        chans = [_to_unit(x, c - w / 2.0, c + w / 2.0) for c, w in pre.ct_windows]
        return np.stack(chans, axis=1)
    if modality == "MR":
        return np.repeat(_mr_unit(x, card, mr_norm)[:, None], pre.channels, axis=1)
    raise ValueError(f"no preprocessing defined for modality {modality!r} (CT and MR only)")


def _mr_unit(x: np.ndarray, card: ModelCard, mr_norm: tuple[float, float] | None) -> np.ndarray:
    """MR float32 [K, H, W] -> one channel in [-1, 1]: ``mr_norm``, or each slice's own percentiles."""
    if mr_norm is not None:
        return _to_unit(x, *mr_norm)
    return np.stack([_to_unit(s, *mr_norm_for(s, card)) for s in x]) if len(x) else x


def _to_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = max(float(hi) - float(lo), 1e-6)
    return (np.clip((x - np.float32(lo)) / np.float32(span), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def _pad(arr: np.ndarray, size: int, value: float | bool) -> np.ndarray:
    """Pad the last two axes of ``arr`` (centred) so both are at least ``size``."""
    h, w = arr.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if not ph and not pw:
        return arr
    widths = [(0, 0)] * (arr.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)]
    return np.pad(arr, widths, constant_values=value)


def _grid_content(tissue: np.ndarray, size: int, step: int) -> np.ndarray:
    """Tissue count of the size x size window at every (step-aligned) corner, from step x step cell sums.

    Cell sums cost one reshape; full-resolution integral images were ~7 ms per 512 slice here.
    """
    h, w = tissue.shape
    hc, wc = h // step, w // step
    cells = tissue[:hc * step, :wc * step].reshape(hc, step, wc, step).sum(axis=(1, 3), dtype=np.int64)
    m = max(1, size // step)  # cells per window side
    ii = np.pad(cells.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return ii[m:, m:] - ii[:-m, m:] - ii[m:, :-m] + ii[:-m, :-m]  # [hc-m+1, wc-m+1]


def crop_positions(norm: np.ndarray, tissue: np.ndarray, card: ModelCard,
                   rng: np.random.Generator | None = None) -> list[CropPos]:
    """Where to cut ``crops_per_slice`` crops in each slice of padded ``norm`` [K, C, H, W].

    Deterministic (rng None): the windows with most tissue on a grid of S/4 steps, greedily, each
    overlapping the ones already chosen by at most MAX_OVERLAP. Training (rng given): uniformly among
    grid windows holding at least half the best window's tissue, jittered by up to one grid step.
    """
    size, per_slice = card.preprocessing.crop_size, card.preprocessing.crops_per_slice
    step = max(1, size // 4)
    h, w = norm.shape[-2:]
    out: list[CropPos] = []
    for k in range(norm.shape[0]):
        counts = _grid_content(tissue[k], size, step)
        if rng is not None:
            ok = np.flatnonzero(counts.ravel() >= 0.5 * counts.max())
            for flat in rng.choice(ok, size=per_slice, replace=len(ok) < per_slice):
                gy, gx = np.unravel_index(flat, counts.shape)
                y = min(h - size, int(gy) * step + int(rng.integers(0, step)))
                x = min(w - size, int(gx) * step + int(rng.integers(0, step)))
                out.append(CropPos(k, y, x))
            continue
        out.extend(CropPos(k, y * step, x * step) for y, x in _greedy(counts, max(1, size // step), per_slice))
    return out


def _greedy(counts: np.ndarray, cells: int, n: int) -> list[tuple[int, int]]:
    """Greedy pick in grid units: most tissue first, limited overlap (``cells`` = window side in cells)."""
    order = sorted(((int(counts[y, x]), y, x) for y in range(counts.shape[0]) for x in range(counts.shape[1])),
                   key=lambda t: (-t[0], t[1], t[2]))  # ties by position: deterministic
    chosen: list[tuple[int, int]] = []
    for limit in (MAX_OVERLAP, 1.0):  # relax only if the slice is too small for n separate crops
        for _, y, x in order:
            if len(chosen) == n:
                return chosen
            if (y, x) not in chosen and all(_overlap(y, x, cy, cx, cells) <= limit for cy, cx in chosen):
                chosen.append((y, x))
    while len(chosen) < n:  # fewer windows than crops (a slice about the crop size): repeat the best
        chosen.append(chosen[len(chosen) % max(1, len(chosen))])
    return chosen


def _overlap(y0: int, x0: int, y1: int, x1: int, size: int) -> float:
    dy, dx = max(0, size - abs(y0 - y1)), max(0, size - abs(x0 - x1))
    return dy * dx / float(size * size)


def prepare(slices: np.ndarray, modality: str, card: ModelCard, *, rng: np.random.Generator | None = None,
            positions: Sequence[CropPos] | None = None, mr_norm: tuple[float, float] | None = None
            ) -> tuple[np.ndarray, list[CropPos]]:
    """Crops float32 [K * crops_per_slice, C, S, S], slice-major, and where each was cut.

    A slice's score is the mean over its ``crops_per_slice`` consecutive crops. A crop is the cut of the
    whole slice normalised (``normalise``) and padded with ``PAD_VALUE``; normalising is elementwise, so
    only what is cut is normalised (CT: its windows; MR: its channel copies), a seventh of the pixels of
    7 slices of 512 with 4 crops of 96 each. The tests hold the two equal, bit for bit.
    """
    pre = card.preprocessing
    size = pre.crop_size
    x = np.asarray(slices, dtype=np.float32)
    kind = modality.upper()
    if x.ndim != 3 or kind not in ("CT", "MR") or len(pre.ct_windows) != pre.channels:
        normalise(x, modality, card, mr_norm)  # raises what the contract says
    if kind == "CT":
        # -inf is below every window: it normalises to exactly PAD_VALUE on every channel.
        source = _pad(x, size, -np.inf)
        tissue = np.asarray(slices) > CT_TISSUE_HU
    else:
        one = _mr_unit(x, card, mr_norm)
        source = _pad(one, size, PAD_VALUE)
        tissue = one > MR_TISSUE_LEVEL
    if positions is None:
        positions = crop_positions(source[:, None], _pad(tissue, size, False), card, rng)
    cuts = np.stack([source[p.slice, p.y:p.y + size, p.x:p.x + size] for p in positions])
    if kind == "CT":
        batch = normalise(cuts, "CT", card)
    else:
        batch = np.repeat(cuts[:, None], pre.channels, axis=1).astype(np.float32)
    log.debug("prepared %d crops of %d px from %d slices", len(batch), size, x.shape[0])
    return batch, list(positions)


def model_inputs(slices: np.ndarray, modality: str, card: ModelCard, *, rng: np.random.Generator | None = None,
                 positions: Sequence[CropPos] | None = None, mr_norm: tuple[float, float] | None = None
                 ) -> np.ndarray:
    """The ``image`` input of the ONNX contract for these slices (see ``prepare``)."""
    return prepare(slices, modality, card, rng=rng, positions=positions, mr_norm=mr_norm)[0]


def prompt_indices(prompt: Mapping[str, str], card: ModelCard) -> np.ndarray:
    """The ``prompt`` input row: int64 [4] indices into the card's vocabulary (missing -> unknown)."""
    return np.array([card.prompt_index(f, prompt.get(f, UNKNOWN)) for f in PROMPT_FIELDS], dtype=np.int64)
