"""Downsampled decoding for saliency: each file decoded once, pooled before any float arithmetic.

``SeriesLayout.read_slices`` is the full-resolution path for the slices that get scored; saliency
needs every slice but only at ~64 px, so it groups slices by file (an enhanced multi-frame object
or a mosaic holds many) and never converts a full-resolution frame to float.

Like ``read_slices``, the decoders raise ``SeriesError`` (how many slices could not be decoded, and
why) and nothing else for what a file holds; ``decode_downsampled_partial`` returns what it could.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator

import numpy as np
import pydicom

from mediqa.agent.dicom.records import INTERRUPTS, InstanceRecord, clean_text
from mediqa.agent.dicom.volume import (
    SeriesLayout,
    SliceRef,
    check_unchanged,
    failure_message,
    mosaic_tile,
    native_pixels,
    rescale_problem,
    slice_failure,
    to_physical,
)
from mediqa.errors import SeriesError

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


class _Undecodable(Exception):
    """One slice of a file that decoded could still not be cut out (a frame the file does not hold...)."""


def _pixels(record: InstanceRecord) -> np.ndarray | str:
    """All of one file's pixels, as stored (one decode per file), or why they could not be decoded."""
    ds = None
    try:
        check_unchanged(record.path, record.size)
        native = native_pixels(record)  # uncompressed and unchanged: read at the indexed offset
        if native is not None:
            return native
        ds = pydicom.dcmread(record.path)
        return np.asarray(ds.pixel_array)
    except INTERRUPTS:
        raise
    except BaseException as exc:  # noqa: BLE001 - whatever the file holds (a decoder's panic too): one reason
        return slice_failure(exc, record.path, ds)


def decode_downsampled_partial(layout: SeriesLayout, indices: Iterable[int], target: int
                               ) -> tuple[list[np.ndarray | None], tuple[tuple[int, str], ...]]:
    """Downsampled physical-unit copies of the slices at ``indices`` (None where one could not be decoded)
    and (layout index, reason) for each of those. Never raises for a file's content."""
    wanted = list(indices)
    by_path: dict[str, list[int]] = defaultdict(list)
    for pos, i in enumerate(wanted):
        by_path[layout.slices[i].path].append(pos)
    out: list[np.ndarray | None] = [None] * len(wanted)
    failed: list[tuple[int, str]] = []
    records = {r.path: r for r in layout.records}
    with _quiet(layout.series_key):
        for path, positions in by_path.items():
            pixels = _pixels(records[path])
            if isinstance(pixels, str):  # every slice of the file has this reason
                failed.extend((wanted[pos], pixels) for pos in positions)
                continue
            for pos in positions:
                ref = layout.slices[wanted[pos]]
                try:
                    out[pos] = _from_pixels(pixels, ref.frame, ref.tile, ref.tiles, ref.slope, ref.intercept, target,
                                            ref.grid)
                except INTERRUPTS:
                    raise
                except BaseException as exc:  # noqa: BLE001
                    failed.append((wanted[pos], slice_failure(exc, path)))
    order = {i: k for k, i in enumerate(wanted)}
    failed.sort(key=lambda f: order[f[0]])
    return out, tuple(failed)


def decode_downsampled(layout: SeriesLayout, indices: Iterable[int], target: int) -> list[np.ndarray]:
    """Downsampled physical-unit copies (float32) of the layout's slices at ``indices``, in that order.

    Raises ``SeriesError("<n> of <m> slices could not be decoded: <reason>")`` when any slice cannot be.
    """
    images, failed = decode_downsampled_partial(layout, indices, target)
    if failed:
        raise SeriesError(failure_message(failed, len(images), "slices could not be decoded"))
    return [img for img in images if img is not None]


def _from_pixels(pixels: np.ndarray, frame: int | None, tile: int | None, tiles: int, slope: float,
                 intercept: float, target: int, grid: tuple[int, int] | None = None) -> np.ndarray:
    problem = rescale_problem(slope, intercept)
    if problem:
        raise _Undecodable(problem)
    if frame is not None and pixels.ndim == 3 and pixels.shape[-1] != 3:
        if not 0 <= frame < pixels.shape[0]:
            raise _Undecodable(f"frame {frame + 1} of a file that holds {pixels.shape[0]}")
        arr = pixels[frame]
    elif frame:
        raise _Undecodable(f"frame {frame + 1} of a file that holds one")
    else:
        arr = pixels
    if tiles > 1 and tile is not None:
        arr = mosaic_tile(arr, tiles, tile, grid)
    if arr.ndim != 2:
        return to_physical(arr, slope, intercept)  # raises with the reason (colour, not 2D...)
    return to_physical(downsample(arr, target), slope, intercept)


def decode_record_downsampled(record: InstanceRecord, target: int) -> dict[SliceKey, np.ndarray]:
    """Every slice one arriving instance holds (frames, mosaic tiles), downsampled, in physical units.

    Keys match ``slice_key`` of the ``SliceRef`` that ``plan_series`` will build for the same slice.
    Raises ``SeriesError`` when the file or one of its slices cannot be decoded.
    """
    tiles = record.mosaic_tiles or 1
    frames: list[int | None] = list(range(record.number_of_frames)) if record.is_multiframe else [None]
    out: dict[SliceKey, np.ndarray] = {}
    with _quiet(record.series_key):
        pixels = _pixels(record)
        if isinstance(pixels, str):
            raise SeriesError(f"an image could not be decoded: {pixels}")
        failed: list[str] = []
        for frame in frames:
            fi = frame or 0
            geom = (record.frames[fi] if fi < len(record.frames) else record.frames[0]) if record.frames else None
            slope = geom.rescale_slope if geom else 1.0
            intercept = geom.rescale_intercept if geom else 0.0
            for tile in (range(tiles) if tiles > 1 else [None]):
                try:
                    out[(record.path, frame, tile)] = _from_pixels(pixels, frame, tile, tiles, slope, intercept,
                                                                  target, record.mosaic_grid)
                except INTERRUPTS:
                    raise
                except BaseException as exc:  # noqa: BLE001
                    failed.append(slice_failure(exc, record.path))
    if failed:
        raise SeriesError(f"{len(failed)} of {len(failed) + len(out)} slices of an image could not be decoded: "
                          f"{failed[0]}")
    return out


@contextlib.contextmanager
def _quiet(key: str) -> Iterator[None]:
    """pydicom's warnings while decoding are logged (DEBUG), not raised: the same outcome everywhere."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if caught:
        log.debug("series %s: %d warning(s) while decoding, first: %s", key, len(caught),
                  clean_text(caught[0].message, 160))
