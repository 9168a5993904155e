"""From header records to an ordered slice layout, and from a layout to pixels on demand.

``plan_series`` works on headers only (cheap, done at completion); ``SeriesLayout.read_slices``
decodes just the slices asked for, so the agent decodes only what it scores.

Domain rules (after MONAI Deploy's DICOMSeriesToVolumeOperator and the field notes): slices are
ordered by ImagePositionPatient projected on the slice normal, not by file name or InstanceNumber;
gantry tilt and uneven spacing are accepted and reported; duplicate positions (repeats, 4D time
series) keep the first time point; enhanced multi-frame objects contribute one slice per frame;
Siemens MOSAIC images are cut into their tiles.

Never wrong-and-live: ``plan_series`` refuses (``SeriesError``, "RescaleSlope 1e+38 is not physical")
a series whose headers cannot be measured physically, and reading turns every failure to decode a
slice (no decoder for the transfer syntax, a corrupt payload, a file deleted or replaced since it was
indexed, a slice of another size) into a ``SeriesError`` that says how many slices could not be read
and why (``read_slices``), or into a ``PartialRead`` of the slices that could be (``read_partial``).
No message holds a path (export paths carry patient names).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from mediqa.agent.dicom.mosaic import tile_of
from mediqa.agent.dicom.records import INTERRUPTS, FrameGeometry, InstanceRecord, clean_text
from mediqa.errors import SeriesError

log = logging.getLogger(__name__)

_POSITION_DECIMALS = 2  # positions within 0.01 mm are the same slice

# What a CT or MR scanner can write, with a wide margin; outside it a header is corrupt, not unusual.
# Rescale: CT slopes are 1 (0.5..2 on a few systems), intercepts -1024/-1000/-8192; MR (Philips stores
# its scaling here) slopes lie within ~1e-3..1e2. With |slope| <= 1e4 and |intercept| <= 1e6 even 32-bit
# stored values (<= 4.3e9) stay below 4.3e13 HU: far inside float32, so rescaling cannot overflow.
SLOPE_RANGE = (1e-6, 1e4)  # |RescaleSlope|
MAX_INTERCEPT = 1e6  # |RescaleIntercept|
# Pixel spacing: clinical CT 0.1..1.5 mm, MR 0.1..~10 mm (low-resolution localizers); 50 mm is no image
# of a patient, and below 1 um no clinical scanner resolves.
SPACING_RANGE_MM = (1e-3, 50.0)
MAX_POSITION_MM = 1e5  # patient coordinates are within a few metres of the isocentre; 100 m is corruption
MAX_COSINE = 1.01  # direction cosines are within [-1, 1] (a little rounding is written by real systems)
# Slice thickness only spaces MOSAIC tiles here: an absurd one is a warning (MRCP thick slabs reach 80 mm).
MAX_THICKNESS_MM = 200.0


def rescale_problem(slope: float, intercept: float) -> str | None:
    """Why this rescale cannot turn stored values into physical units, or None when it can."""
    if not math.isfinite(slope) or not SLOPE_RANGE[0] <= abs(slope) <= SLOPE_RANGE[1]:
        return f"RescaleSlope {slope:g} is not physical"
    if not math.isfinite(intercept) or abs(intercept) > MAX_INTERCEPT:
        return f"RescaleIntercept {intercept:g} is not physical"
    return None


def _vector(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _physical_problem(records: Sequence[InstanceRecord], candidates: Sequence[Candidate]) -> str | None:
    """The first header value of the series that no scanner writes (see the ranges above), or None.

    Values a series repeats (spacing, orientation, rescale) are checked once each."""
    lo, hi = SPACING_RANGE_MM
    for spacing in dict.fromkeys(rec.pixel_spacing for rec in records):
        if spacing is not None and not all(math.isfinite(v) and lo <= v <= hi for v in spacing):
            return f"PixelSpacing {spacing[0]:g}\\{spacing[1]:g} mm is not physical"
    seen: set[object] = set()
    for _, _, geom in candidates:
        rescale = (geom.rescale_slope, geom.rescale_intercept)
        if rescale not in seen:
            seen.add(rescale)
            problem = rescale_problem(*rescale)
            if problem:
                return problem
        if geom.position is not None and not all(math.isfinite(v) and abs(v) <= MAX_POSITION_MM
                                                 for v in geom.position):
            return f"ImagePositionPatient {_vector(geom.position)} is not physical"
        orientation = geom.orientation
        if orientation is not None and orientation not in seen:
            seen.add(orientation)
            if not all(math.isfinite(v) and abs(v) <= MAX_COSINE for v in orientation):
                return f"ImageOrientationPatient {_vector(orientation)} is not physical"
    return None


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
    grid: tuple[int, int] | None = None  # MOSAIC tile grid (rows, columns); None: square


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
        """Decode the slices at ``indices`` -> float32 [K, H, W] in physical units (HU for CT).

        Raises ``SeriesError("<n> of <m> chosen slices could not be read: <reason>")`` when any of them
        cannot be (and never another exception for what a file holds); ``read_partial`` reads the rest.
        """
        part = self.read_partial(indices)
        if part.failed:
            raise SeriesError(part.error_message("chosen slices could not be read"))
        return part.pixels

    def read_partial(self, indices: Sequence[int]) -> PartialRead:
        """Decode what can be decoded of ``indices``; say which slices could not be, and why.

        Slices whose size differs from the most common one among those read count as unreadable
        (a stack has one size). Never raises for a file's content; with nothing readable, ``pixels``
        is empty and every index is in ``failed``.
        """
        cache: dict[str, pydicom.Dataset | np.ndarray | _Unreadable] = {}
        records = {r.path: r for r in self.records}
        read: list[tuple[int, np.ndarray]] = []
        failed: list[tuple[int, str]] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # pydicom's notes on odd files: logged, not raised
            for i in indices:
                ref = self.slices[i]
                try:
                    read.append((i, self._decode(ref, cache, records.get(ref.path))))
                except INTERRUPTS:
                    raise
                except BaseException as exc:  # noqa: BLE001 - any failure of one slice (a decoder's panic too)
                    ds = cache.get(ref.path)
                    failed.append((i, slice_failure(exc, ref.path, ds if isinstance(ds, pydicom.Dataset) else None)))
        if caught:
            log.debug("series %s: %d warning(s) while decoding, first: %s", self.series_key, len(caught),
                      clean_text(caught[0].message, 160))
        shapes = Counter(a.shape for _, a in read)
        if len(shapes) > 1:
            first_seen: dict[tuple[int, ...], int] = {}
            for k, (_, a) in enumerate(read):
                first_seen.setdefault(a.shape, k)
            main = max(shapes, key=lambda shape: (shapes[shape], -first_seen[shape]))  # ties: the first read
            for i, a in read:
                if a.shape != main:
                    failed.append((i, f"image size {_size(a.shape)} differs from the other slices' {_size(main)}"))
            read = [(i, a) for i, a in read if a.shape == main]
        order = {i: k for k, i in enumerate(indices)}
        failed.sort(key=lambda f: order[f[0]])
        pixels = np.stack([a for _, a in read]) if read else np.zeros((0, 0, 0), np.float32)
        if failed:
            log.debug("series %s: %d of %d slices could not be read", self.series_key, len(failed), len(indices))
        return PartialRead(pixels=pixels, indices=tuple(i for i, _ in read), failed=tuple(failed))

    def read_all(self) -> np.ndarray:
        return self.read_slices(range(self.n_slices))

    def _decode(self, ref: SliceRef, cache: dict[str, pydicom.Dataset | np.ndarray | _Unreadable],
                record: InstanceRecord | None) -> np.ndarray:
        ds = cache.get(ref.path)
        if isinstance(ds, _Unreadable):
            raise ds.error
        if ds is None:
            try:
                check_unchanged(ref.path, record.size if record is not None else None)
                native = native_pixels(record) if record is not None else None  # uncompressed: no second parse
                ds = cache[ref.path] = native if native is not None else pydicom.dcmread(ref.path)  # once per call
            except BaseException as exc:
                if not isinstance(exc, INTERRUPTS):
                    cache[ref.path] = _Unreadable(exc)
                raise
        problem = rescale_problem(ref.slope, ref.intercept)
        if problem:  # plan_series refuses these; a layout made another way must not overflow either
            raise _SliceProblem(problem)
        if isinstance(ds, np.ndarray):  # every frame, as pydicom's pixel_array gives them
            if ref.frame is not None and ds.ndim == 3:
                if not 0 <= ref.frame < ds.shape[0]:
                    raise _SliceProblem(f"frame {ref.frame + 1} of a file that holds {ds.shape[0]}")
                arr = ds[ref.frame]
            else:
                arr = ds
        elif ref.frame is not None:
            from pydicom.pixels import pixel_array

            arr = pixel_array(ds, index=ref.frame)  # decodes this frame only
        else:
            arr = ds.pixel_array
        arr = np.asarray(arr)
        if ref.tiles > 1 and ref.tile is not None:
            arr = mosaic_tile(arr, ref.tiles, ref.tile, ref.grid)
        return to_physical(arr, ref.slope, ref.intercept)


_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"  # (7FE0,0010) PixelData, little endian


def native_pixels(record: InstanceRecord) -> np.ndarray | None:
    """Uncompressed pixels read straight from the file at the offset the indexer found: the array pydicom's
    ``pixel_array`` gives (same dtype, shape and values: unused high bits masked, or sign-extended when
    signed), without parsing the header a second time (that parse cost more than the pixels). A multi-frame
    file gives the whole frames it holds (a missing one fails alone, as with pydicom).

    None when the record has no offset or the file no longer looks like the one indexed: another size or
    mtime, no DICM preamble, or no PixelData tag right before the offset (a bad sector or a rewrite in
    place shows there). pydicom then parses it again and judges what it holds now.
    """
    if record.native_pixels is None:
        return None
    offset, bits, stored, signed = record.native_pixels
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    frames = record.number_of_frames
    frame_bytes = record.rows * record.columns * dtype.itemsize
    if offset < 12:
        return None
    with open(record.path, "rb") as fh:  # read-only, like everything the agent opens in the export folder
        st = os.fstat(fh.fileno())
        if (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns):
            return None
        preamble = fh.read(132)
        fh.seek(offset - 12)
        before = fh.read(12)  # explicit VR: tag, VR, 2 reserved bytes, length; implicit VR: tag, length
        if preamble[128:132] != b"DICM" or _PIXEL_TAG_LE not in (before[0:4], before[4:8]):
            return None
        data = fh.read(frame_bytes * frames)
    held = min(frames, len(data) // frame_bytes) if frame_bytes else 0
    if held == 0 or (frames == 1 and len(data) < frame_bytes):
        raise ValueError(f"pixel data is {len(data)} bytes, {frame_bytes * frames} expected (file cut short?)")
    arr = np.frombuffer(data[:held * frame_bytes], dtype).astype(dtype.newbyteorder("="), copy=True)
    if stored < bits:  # as pydicom's unused-bits correction: shift the stored bits up, then back (arithmetic)
        shift = bits - stored
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    if frames > 1:
        return arr.reshape(held, record.rows, record.columns)
    return arr.reshape(record.rows, record.columns)


@dataclass(frozen=True)
class PartialRead:
    """What ``SeriesLayout.read_partial`` could decode: pixels of the readable slices, reasons for the rest."""

    pixels: np.ndarray  # float32 [K, H, W], physical units: the readable slices, in the order asked
    indices: tuple[int, ...]  # layout indices of those K slices
    failed: tuple[tuple[int, str], ...]  # (layout index, reason) of each slice that could not be read

    @property
    def asked(self) -> int:
        return len(self.indices) + len(self.failed)

    def summary(self) -> str:
        """E.g. "27 of 28 images could be read (file missing (deleted after it was indexed?))"."""
        head = f"{len(self.indices)} of {self.asked} images could be read"
        return f"{head} ({self.failed[0][1]})" if self.failed else head

    def error_message(self, what: str) -> str:
        """E.g. "1 of 7 chosen slices could not be read: <first reason>" (and how many other reasons)."""
        return failure_message(self.failed, self.asked, what)


def failure_message(failed: Sequence[tuple[int, str]], asked: int, what: str) -> str:
    """"<n> of <asked> <what>: <first reason>" plus how many other distinct reasons there were ("" if none)."""
    reasons = list(dict.fromkeys(reason for _, reason in failed))
    more = f" (and {len(reasons) - 1} other reason(s))" if len(reasons) > 1 else ""
    return f"{len(failed)} of {asked} {what}: {reasons[0]}{more}" if reasons else ""


class _SliceProblem(Exception):
    """A slice that decoded (or would decode) into something that is not a physical 2D image."""


@dataclass(frozen=True)
class _Unreadable:
    error: BaseException  # why dcmread failed on this path (raised again for its other frames)


def check_unchanged(path: str, size: int | None) -> None:
    """Raise when the file at ``path`` is gone, or is no longer the ``size`` bytes it had when indexed.

    A file replaced after indexing is no longer what its record describes (and may be far larger than
    the ``ingest.limits`` it was checked against): it is not parsed at all.
    """
    now = os.stat(path).st_size
    if size is not None and now != size:
        raise _SliceProblem(f"file changed after it was indexed ({size} -> {now} bytes)")


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def to_physical(arr: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """A decoded 2D slice -> float32 in physical units; ``_SliceProblem`` when it is not one."""
    if arr.ndim == 3 and arr.shape[-1] == 3:
        raise _SliceProblem("a colour image (SamplesPerPixel 3) cannot be scored")
    if arr.ndim != 2 or 0 in arr.shape:
        raise _SliceProblem(f"decoded pixels of shape {_size(arr.shape)} are not a 2D image")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == np.bool_):
        raise _SliceProblem(f"decoded pixels of type {arr.dtype} are not numbers")
    with np.errstate(all="ignore"):  # float pixel data can hold anything: checked just below
        out = arr.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            out = out * np.float32(slope) + np.float32(intercept)
    if not np.isfinite(out).all():
        raise _SliceProblem("pixel values are not finite numbers in physical units")
    return out


def slice_failure(exc: BaseException, path: str, ds: object = None) -> str:
    """A short reason why one slice could not be read: no path, no traceback, the codec when known."""
    if isinstance(exc, FileNotFoundError):
        return "file missing (deleted after it was indexed?)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, _SliceProblem):
        return str(exc)
    if isinstance(exc, InvalidDicomError):
        return "no longer a DICOM file (replaced after it was indexed?)"
    if isinstance(exc, OSError):
        return clean_text(exc.strerror or type(exc).__name__, 120)
    text = str(exc)
    for name in (path, os.path.basename(path)):
        if name:
            text = text.replace(name, "<file>")
    text = " ".join(clean_text(text, 2000).split())
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return clean_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 200)
    name = getattr(syntax, "name", "") or str(syntax)
    if isinstance(exc, NotImplementedError):  # pydicom: no decoder (plugin) for this syntax
        return clean_text(f"{name}: no decoder for this transfer syntax is installed", 200)
    text = text.removeprefix("Unable to decode as exceptions were raised by all available plugins:").strip()
    reason = f"{name} data could not be decoded ({text[:100]})" if text else f"{name} data could not be decoded"
    return clean_text(reason, 200)


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
    notes: list[str] = []
    candidates = _expand(unique)
    problem = _physical_problem(unique, candidates)
    if problem:
        raise SeriesError(problem)
    thickness = sorted({r.slice_thickness for r in unique if r.slice_thickness is not None
                        and not 0.0 <= r.slice_thickness <= MAX_THICKNESS_MM})
    if thickness:
        notes.append(f"SliceThickness {thickness[0]:g} mm is not physical: ignored")
    orientations = Counter(_round_orientation(geom.orientation) for _, _, geom in candidates)
    if len(orientations) > 1:
        main = orientations.most_common(1)[0][0]
        candidates = [c for c in candidates if _round_orientation(c[2].orientation) == main]
        notes.append(f"mixed slice orientations: kept the {len(candidates)} slices of the main one")
    ordered, ordered_by = _order(candidates, notes)
    refs, dropped, time_points = _dedupe(ordered, ordered_by)
    if dropped:
        notes.append(f"{dropped} slices share a position with another (time series or repeats): "
                     f"scoring the first of each")
    first = unique[0]
    normal = _normal(candidates[0][2].orientation)
    spacing, uneven = _spacing([r.position for r in refs]) if ordered_by == "position" else (None, False)
    if uneven:
        notes.append("uneven slice spacing")
    tilt = _tilt_deg(candidates, normal) if ordered_by == "position" else 0.0
    for w in notes:
        log.debug("series %s: %s", first.series_key, w)
    return SeriesLayout(
        series_uid=uid, series_key=first.series_key, modality=first.modality, slices=tuple(refs),
        records=tuple(sorted(unique, key=lambda r: (r.instance_number or 0, r.path))),
        pixel_spacing=first.pixel_spacing, slice_spacing=spacing, uneven_spacing=uneven,
        gantry_tilt_deg=tilt, ordered_by=ordered_by, dropped_duplicates=dropped, time_points=time_points,
        warnings=tuple(notes),
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


def _order(candidates: list[Candidate], notes: list[str]
           ) -> tuple[list[Ordered], str]:
    """Returns (ref, temporal index, acquisition order) triples sorted along the normal."""
    have_geometry = all(g.position and g.orientation for _, _, g in candidates)
    refs: list[Ordered] = []
    normal = _normal(candidates[0][2].orientation) if have_geometry else None
    # Every origin projected on the normal at once (one product, not one np.dot per slice: 2,000 of those
    # were a third of a long series' plan).
    along = _along(candidates, normal).tolist() if normal is not None else None
    for order, (rec, frame, geom) in enumerate(candidates):
        tiles = rec.mosaic_tiles or 1
        base = along[order] if along is not None else float(
            rec.instance_number if rec.instance_number is not None else order)
        thick = rec.slice_thickness
        step = thick if thick is not None and 0.0 < thick <= MAX_THICKNESS_MM else 1.0
        tile_positions = rec.mosaic_positions if len(rec.mosaic_positions) == tiles else ()
        for tile in range(tiles):
            if tiles > 1 and tile_positions and normal is not None:
                position = float(np.dot(tile_positions[tile], normal))  # each tile's own position (mosaic.py)
            else:  # no geometry to place tiles: spaced by slice thickness, as a last resort
                position = base + tile * step if tiles > 1 else base
            refs.append((SliceRef(
                path=rec.path, frame=frame, tile=tile if tiles > 1 else None, tiles=tiles, position=position,
                instance_number=rec.instance_number, slope=geom.rescale_slope, intercept=geom.rescale_intercept,
                grid=rec.mosaic_grid,
            ), geom.temporal_index, (rec.acquisition_number or 0) * 100000 + (rec.instance_number or order)))
    if not have_geometry:
        notes.append("ImagePositionPatient/ImageOrientationPatient missing: ordered by InstanceNumber")
        refs.sort(key=lambda t: (t[0].instance_number or 0, t[0].path, t[0].frame or 0))
        return refs, "instance_number"
    refs.sort(key=lambda t: (round(t[0].position, _POSITION_DECIMALS), t[1], t[2], t[0].frame or 0))
    return refs, "position"


def _along(candidates: list[Candidate], normal: np.ndarray) -> np.ndarray:
    """Each candidate's origin along the slice normal (mm); every candidate has a position here."""
    return np.asarray([g.position for _, _, g in candidates], dtype=np.float64) @ normal


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


@functools.lru_cache(maxsize=256)  # a series repeats its orientation on every slice
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
    points = np.asarray([g.position for _, _, g in candidates if g.position], dtype=np.float64)
    if len(points) < 2:
        return 0.0
    along = points @ normal
    low, high = int(np.argmin(along)), len(along) - 1 - int(np.argmax(along[::-1]))  # as a stable sort's ends
    travel = points[high] - points[low]
    length = float(np.linalg.norm(travel))
    if length < 1e-3:
        return 0.0
    cos = abs(float(np.dot(travel / length, normal)))
    angle = math.degrees(math.acos(min(1.0, cos)))
    return angle if angle > 0.5 else 0.0


def mosaic_tile(arr: np.ndarray, tiles: int, index: int, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Tile ``index`` of a mosaic image (the grid: ``agent/dicom/mosaic.py``)."""
    return tile_of(arr, tiles, index, grid)
