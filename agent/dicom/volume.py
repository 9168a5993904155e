"""From header records to an ordered slice layout, and from a layout to pixels on demand.

``plan_series`` works on headers only (cheap, done at completion); ``SeriesLayout.read_slices``
decodes just the slices asked for, so the agent decodes only what it scores.

Domain rules (after MONAI Deploy's DICOMSeriesToVolumeOperator and the field notes): slices are
ordered by ImagePositionPatient projected on the slice normal, not by file name or InstanceNumber;
gantry tilt and uneven spacing are accepted and reported; duplicate positions (repeats, 4D time
series) keep the first time point; enhanced multi-frame objects contribute one slice per frame;
Siemens MOSAIC images are cut into their tiles.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pydicom

from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord
from mediqa.errors import SeriesError

log = logging.getLogger(__name__)

_POSITION_DECIMALS = 2  # positions within 0.01 mm are the same slice


@dataclass(frozen=True)
class SliceRef:
    """Where to find one 2D slice: a file, a frame in it, and (for MOSAIC) a tile."""

    path: str
    frame: int | None  # None: single-frame file
    tile: int | None  # MOSAIC tile index
    tiles: int  # tiles in the mosaic (1 when not a mosaic)
    position: float  # along the slice normal, mm (or index when geometry is missing)
    instance_number: int | None
    slope: float
    intercept: float


@dataclass(frozen=True)
class SeriesLayout:
    """An ordered, de-duplicated stack of slices plus what the agent needs to know about it."""

    series_uid: str
    series_key: str
    modality: str
    slices: tuple[SliceRef, ...]
    records: tuple[InstanceRecord, ...] = field(repr=False)
    pixel_spacing: tuple[float, float] | None
    slice_spacing: float | None
    uneven_spacing: bool
    gantry_tilt_deg: float
    ordered_by: str  # "position" or "instance_number"
    dropped_duplicates: int
    time_points: int
    warnings: tuple[str, ...] = ()

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def first(self) -> InstanceRecord:
        return self.records[0]

    def read_slices(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the slices at ``indices`` -> float32 [K, H, W] in physical units (HU for CT)."""
        cache: dict[str, pydicom.Dataset] = {}
        out = [self._decode(self.slices[i], cache) for i in indices]
        shapes = {a.shape for a in out}
        if len(shapes) > 1:
            raise SeriesError(f"series {self.series_key} mixes image sizes {sorted(shapes)}")
        return np.stack(out) if out else np.zeros((0, 0, 0), np.float32)

    def read_all(self) -> np.ndarray:
        return self.read_slices(range(self.n_slices))

    def _decode(self, ref: SliceRef, cache: dict[str, pydicom.Dataset]) -> np.ndarray:
        ds = cache.get(ref.path)
        if ds is None:
            ds = cache[ref.path] = pydicom.dcmread(ref.path)  # parsed once per call, even for many frames
        if ref.frame is not None:
            from pydicom.pixels import pixel_array

            arr = pixel_array(ds, index=ref.frame)  # decodes this frame only
        else:
            arr = ds.pixel_array
        arr = np.asarray(arr)
        if ref.tiles > 1 and ref.tile is not None:
            arr = mosaic_tile(arr, ref.tiles, ref.tile)
        out = arr.astype(np.float32)
        if ref.slope != 1.0 or ref.intercept != 0.0:
            out = out * np.float32(ref.slope) + np.float32(ref.intercept)
        return out


# One slice candidate before ordering: its record, frame index (multi-frame objects) and geometry.
Candidate = tuple[InstanceRecord, int | None, FrameGeometry]
# A slice with its temporal index and acquisition order, sorted along the slice normal.
Ordered = tuple[SliceRef, int, int]


def plan_series(records: Sequence[InstanceRecord]) -> SeriesLayout:
    """Order and de-duplicate a series' slices from headers alone."""
    if not records:
        raise SeriesError("no usable images in series")
    uid = records[0].series_uid
    unique = list({r.sop_instance_uid: r for r in records}.values())  # a re-sent file counts once
    warnings: list[str] = []
    candidates = _expand(unique)
    orientations = Counter(_round_orientation(geom.orientation) for _, _, geom in candidates)
    if len(orientations) > 1:
        main = orientations.most_common(1)[0][0]
        candidates = [c for c in candidates if _round_orientation(c[2].orientation) == main]
        warnings.append(f"mixed slice orientations: kept the {len(candidates)} slices of the main one")
    ordered, ordered_by = _order(candidates, warnings)
    refs, dropped, time_points = _dedupe(ordered, ordered_by)
    if dropped:
        warnings.append(f"{dropped} slices share a position with another (time series or repeats): "
                        f"scoring the first of each")
    first = unique[0]
    normal = _normal(candidates[0][2].orientation)
    spacing, uneven = _spacing([r.position for r in refs]) if ordered_by == "position" else (None, False)
    if uneven:
        warnings.append("uneven slice spacing")
    tilt = _tilt_deg(candidates, normal) if ordered_by == "position" else 0.0
    for w in warnings:
        log.debug("series %s: %s", first.series_key, w)
    return SeriesLayout(
        series_uid=uid, series_key=first.series_key, modality=first.modality, slices=tuple(refs),
        records=tuple(sorted(unique, key=lambda r: (r.instance_number or 0, r.path))),
        pixel_spacing=first.pixel_spacing, slice_spacing=spacing, uneven_spacing=uneven,
        gantry_tilt_deg=tilt, ordered_by=ordered_by, dropped_duplicates=dropped, time_points=time_points,
        warnings=tuple(warnings),
    )


def _expand(records: Sequence[InstanceRecord]) -> list[Candidate]:
    out: list[Candidate] = []
    for rec in records:
        if rec.is_multiframe:
            frames = rec.frames if len(rec.frames) == rec.number_of_frames else rec.frames[:1] * rec.number_of_frames
            out.extend((rec, i, geom) for i, geom in enumerate(frames))
        else:
            out.append((rec, None, rec.frames[0] if rec.frames else FrameGeometry(None, None)))
    return out


def _order(candidates: list[Candidate], warnings: list[str]
           ) -> tuple[list[Ordered], str]:
    """Returns (ref, temporal index, acquisition order) triples sorted along the normal."""
    have_geometry = all(g.position and g.orientation for _, _, g in candidates)
    refs: list[Ordered] = []
    normal = _normal(candidates[0][2].orientation) if have_geometry else None
    for order, (rec, frame, geom) in enumerate(candidates):
        tiles = rec.mosaic_tiles or 1
        base = float(np.dot(geom.position, normal)) if normal is not None and geom.position else float(
            rec.instance_number if rec.instance_number is not None else order)
        step = rec.slice_thickness or 1.0
        for tile in range(tiles):
            refs.append((SliceRef(
                path=rec.path, frame=frame, tile=tile if tiles > 1 else None, tiles=tiles,
                # Mosaic tiles: spaced by slice thickness (exact offsets need the Siemens CSA header).
                position=base + tile * step if tiles > 1 else base,
                instance_number=rec.instance_number, slope=geom.rescale_slope, intercept=geom.rescale_intercept,
            ), geom.temporal_index, (rec.acquisition_number or 0) * 100000 + (rec.instance_number or order)))
    if not have_geometry:
        warnings.append("ImagePositionPatient/ImageOrientationPatient missing: ordered by InstanceNumber")
        refs.sort(key=lambda t: (t[0].instance_number or 0, t[0].path, t[0].frame or 0))
        return refs, "instance_number"
    refs.sort(key=lambda t: (round(t[0].position, _POSITION_DECIMALS), t[1], t[2], t[0].frame or 0))
    return refs, "position"


def _dedupe(refs: list[Ordered], ordered_by: str) -> tuple[list[SliceRef], int, int]:
    if ordered_by != "position":
        return [r for r, _, _ in refs], 0, 1
    kept: list[SliceRef] = []
    counts: Counter[float] = Counter()
    for ref, _, _ in refs:  # sorted so that the first time point at each position comes first
        key = round(ref.position, _POSITION_DECIMALS)
        counts[key] += 1
        if counts[key] == 1:
            kept.append(ref)
    dropped = len(refs) - len(kept)
    time_points = max(counts.values()) if counts else 1
    return kept, dropped, time_points


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray:
    if not orientation:
        return np.array([0.0, 0.0, 1.0])
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    n = np.cross(row, col)
    norm = np.linalg.norm(n)
    return n / norm if norm else np.array([0.0, 0.0, 1.0])


def _round_orientation(orientation: tuple[float, ...] | None) -> tuple[float, ...] | None:
    return tuple(round(v, 3) for v in orientation) if orientation else None


def _spacing(positions: list[float]) -> tuple[float | None, bool]:
    if len(positions) < 2:
        return None, False
    steps = np.diff(np.asarray(positions))
    median = float(np.median(steps))
    uneven = bool(np.any(np.abs(steps - median) > max(0.01, 0.1 * abs(median))))
    return median, uneven


def _tilt_deg(candidates: list[Candidate], normal: np.ndarray) -> float:
    """Angle between the slice normal and the line through the slice origins (CT gantry tilt).

    Oblique MR slices move along their own normal (angle 0); a tilted CT gantry makes the table
    advance along z while the slice plane leans, so origins leave the normal by the tilt angle.
    """
    points = [np.asarray(g.position) for _, _, g in candidates if g.position]
    if len(points) < 2:
        return 0.0
    ordered = sorted(points, key=lambda p: float(np.dot(p, normal)))
    travel = ordered[-1] - ordered[0]
    length = float(np.linalg.norm(travel))
    if length < 1e-3:
        return 0.0
    cos = abs(float(np.dot(travel / length, normal)))
    angle = math.degrees(math.acos(min(1.0, cos)))
    return angle if angle > 0.5 else 0.0


def mosaic_tile(arr: np.ndarray, tiles: int, index: int) -> np.ndarray:
    per_row = math.ceil(math.sqrt(tiles))
    h, w = arr.shape[0] // per_row, arr.shape[1] // per_row
    r, c = divmod(index, per_row)
    return arr[r * h:(r + 1) * h, c * w:(c + 1) * w]
