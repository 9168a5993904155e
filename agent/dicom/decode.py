"""Downsampled decoding for saliency: each file decoded once, pooled before any float arithmetic.

``SeriesLayout.read_slices`` is the full-resolution path for the slices that get scored; saliency
needs every slice but only at ~64 px, so it groups slices by file (an enhanced multi-frame object
or a mosaic holds many) and never converts a full-resolution frame to float.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import pydicom

from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout, SliceRef, mosaic_tile

log = logging.getLogger(__name__)

SliceKey = tuple[str, "int | None", "int | None"]  # (path, frame, tile): one slice, independent of the layout


def slice_key(ref: SliceRef) -> SliceKey:
    """Identify a slice by where it lives, so values computed on arrival map onto any later layout."""
    return (ref.path, ref.frame, ref.tile)


def downsample(arr: np.ndarray, target: int) -> np.ndarray:
    """Max-pool a 2D slice to about ``target`` pixels per side, built from strided views (~50 us at 512).

    Plain striding drops thin structures (a 3 mm skull becomes a broken dotted ring at 4 mm steps),
    and the body mask then cannot be filled; the maximum over each block keeps them.
    """
    step = max(1, max(arr.shape[-2:]) // target)
    if step == 1:
        return arr
    h, w = arr.shape[-2] // step * step, arr.shape[-1] // step * step
    rows = arr[:h:step, :w]
    for i in range(1, step):
        rows = np.maximum(rows, arr[i:h:step, :w])
    out = rows[:, ::step]
    for i in range(1, step):
        out = np.maximum(out, rows[:, i::step])
    return out


def _physical(arr: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float32)
    if slope != 1.0 or intercept != 0.0:
        out = out * np.float32(slope) + np.float32(intercept)
    return out


def decode_downsampled(layout: SeriesLayout, indices: Iterable[int], target: int) -> list[np.ndarray]:
    """Downsampled physical-unit copies (float32) of the layout's slices at ``indices``, in that order."""
    wanted = list(indices)
    by_path: dict[str, list[int]] = defaultdict(list)
    for pos, i in enumerate(wanted):
        by_path[layout.slices[i].path].append(pos)
    out: list[np.ndarray | None] = [None] * len(wanted)
    for path, positions in by_path.items():
        pixels = np.asarray(pydicom.dcmread(path).pixel_array)
        for pos in positions:
            ref = layout.slices[wanted[pos]]
            out[pos] = _from_pixels(pixels, ref.frame, ref.tile, ref.tiles, ref.slope, ref.intercept, target)
    return [o for o in out if o is not None]


def _from_pixels(pixels: np.ndarray, frame: int | None, tile: int | None, tiles: int, slope: float,
                 intercept: float, target: int) -> np.ndarray:
    arr = pixels[frame] if frame is not None and pixels.ndim == 3 else pixels
    if tiles > 1 and tile is not None:
        arr = mosaic_tile(arr, tiles, tile)
    return _physical(downsample(arr, target), slope, intercept)


def decode_record_downsampled(record: InstanceRecord, target: int) -> dict[SliceKey, np.ndarray]:
    """Every slice one arriving instance holds (frames, mosaic tiles), downsampled, in physical units.

    Keys match ``slice_key`` of the ``SliceRef`` that ``plan_series`` will build for the same slice.
    """
    pixels = np.asarray(pydicom.dcmread(record.path).pixel_array)
    tiles = record.mosaic_tiles or 1
    frames: list[int | None] = list(range(record.number_of_frames)) if record.is_multiframe else [None]
    out: dict[SliceKey, np.ndarray] = {}
    for frame in frames:
        fi = frame or 0
        geom = (record.frames[fi] if fi < len(record.frames) else record.frames[0]) if record.frames else None
        slope = geom.rescale_slope if geom else 1.0
        intercept = geom.rescale_intercept if geom else 0.0
        for tile in (range(tiles) if tiles > 1 else [None]):
            out[(record.path, frame, tile)] = _from_pixels(pixels, frame, tile, tiles, slope, intercept, target)
    return out
