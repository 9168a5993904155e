"""Header-only indexing: one file -> one frozen ``InstanceRecord``, or a ``DicomSkip`` with a reason.

Pixels are never decoded here (``stop_before_pixels``), so indexing keeps up with a console
exporting hundreds of files a second. ``specific_tags`` is not used: measured on 512x512 CT it made
``dcmread`` about 3x slower (2.4 vs 0.7 ms per file), and pydicom converts element values lazily anyway.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

from mediqa.agent.config import HeaderLimits
from mediqa.agent.dicom.mosaic import SIEMENS_MOSAIC_TILES, UIH_SLICES, describe_mosaic
from mediqa.agent.dicom.records import (
    INTERRUPTS,
    TUPLE_LIMIT,
    FrameGeometry,
    InstanceRecord,
    clean_text,
    printable_path,
)
from mediqa.agent.dicom.values import first_float as _float
from mediqa.agent.dicom.values import value_list as _list
from mediqa.agent.watch.walk import walk_files
from mediqa.errors import DicomSkip

log = logging.getLogger(__name__)

# SOP classes of CT/MR images we can score. Everything else (SR, PR, KO, dose, RT, SC...) is skipped.
IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image",
}
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
LOCALIZER_WORDS = {"LOCALIZER", "SCOUT", "SURVIEW", "REF_SURVIEW", "TOPOGRAM", "SCANOGRAM"}


def read_header(path: str | os.PathLike[str], *, skip_derived: bool = True, skip_localizers: bool = True,
                limits: HeaderLimits | None = None) -> InstanceRecord:
    """Parse one file's header. Raises ``DicomSkip`` and nothing else (but KeyboardInterrupt/SystemExit).

    ``retry`` is set for maybe-half-written files. A complete file whose header pydicom cannot parse, or
    whose values break while the record is built (an unknown VR, an undecodable value, a nested sequence
    past the recursion limit, any exception at all), is ``malformed_header``; sizes beyond ``limits``
    (``ingest.limits``; None: the defaults) or beyond what the pixel data holds are ``header_limits``,
    checked before anything is allocated for them. Both name the series when the header did.
    pydicom's warnings about non-conformant values are collected here and logged at DEBUG, so a daemon
    (or a test run with warnings as errors) sees the same outcome for the same file.
    """
    path = os.fspath(path)
    limits = limits if limits is not None else HeaderLimits()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _read_header(path, skip_derived, skip_localizers, limits)
        finally:
            if caught:
                log.debug("pydicom warned %d time(s) while reading a header, first: %s", len(caught),
                          clean_text(caught[0].message, 160))


def _read_header(path: str, skip_derived: bool, skip_localizers: bool, limits: HeaderLimits) -> InstanceRecord:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _skip("unreadable", f"cannot stat: {exc.strerror}", retry=True) from None
    if not stat.S_ISREG(st.st_mode):  # opening a FIFO blocks until a writer comes; a device is no image
        raise _skip("not_regular_file", "not a regular file (a folder, pipe, socket or device)")
    if st.st_size == 0:
        raise _skip("empty_file", "zero bytes (still being written?)", retry=True)
    try:
        with open(path, "rb") as fh:  # read-only: the agent never writes into the export folder
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            pixels = _pixel_data(fh, ds, st.st_size, limits.max_frames)
    except DicomSkip:
        raise
    except PermissionError:
        raise _skip("permission_denied", "the agent's user cannot read this file") from None
    except InvalidDicomError:
        raise _skip("not_dicom", "no DICM preamble") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # A truncated file parses as far as it goes and then fails: it may still be arriving.
        raise _skip("unreadable", _describe(exc, path), retry=True) from None
    except INTERRUPTS:
        raise
    except BaseException as exc:  # noqa: BLE001 - NotImplementedError, RecursionError, MemoryError...: a poison
        raise _skip("malformed_header", _describe(exc, path)) from None
    series_uid = _series_uid(ds)
    try:
        return _checked_record(path, st, ds, pixels, skip_derived, skip_localizers, limits)
    except DicomSkip as skip:
        # Named for faults ("27 of 28 images could be read") and for policy skips (a localizer or derived
        # series is reported once as skipped, not silently dropped); the tracker tells the two apart.
        if skip.series_uid is None:
            skip.series_uid = series_uid
        raise
    except INTERRUPTS:
        raise
    except BaseException as exc:  # noqa: BLE001 - pydicom converts values lazily: any of them can break here
        raise DicomSkip("malformed_header", _describe(exc, path), series_uid=series_uid) from None


# Video syntaxes: one fragment may hold many frames (elsewhere each frame has at least one fragment).
_VIDEO_SYNTAX_PREFIX = "1.2.840.10008.1.2.4.10"


def _checked_record(path: str, st: os.stat_result, ds: Dataset, pixels: _Pixels, skip_derived: bool,
                    skip_localizers: bool, limits: HeaderLimits) -> InstanceRecord:
    # The file meta (first bytes of the file) names the SOP class even when the rest is still arriving.
    sop_class = str(_meta(ds, "MediaStorageSOPClassUID") or ds.get("SOPClassUID", ""))
    if sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        raise _skip("dicomdir", "media directory, not an image")
    if sop_class not in IMAGE_SOP_CLASSES:
        raise _skip("not_ct_mr_image", f"SOP class {clean_text(sop_class, 64) or 'missing'}")
    if not pixels.complete:
        # pydicom parses a truncated header happily: without this check a half-written file would be indexed.
        raise _skip("incomplete", "pixel data missing or shorter than announced (still being written?)", retry=True)
    if "SeriesInstanceUID" not in ds or "SOPInstanceUID" not in ds:
        raise _skip("missing_uid", "no SeriesInstanceUID/SOPInstanceUID")
    image_type = tuple(str(v).upper() for v in _list(ds.get("ImageType"))[:TUPLE_LIMIT])
    if skip_localizers and LOCALIZER_WORDS & set(image_type):
        raise _skip("localizer", "ImageType marks a localizer/scout")
    if skip_derived and image_type and (image_type[0] == "DERIVED" or "SECONDARY" in image_type[1:2]):
        raise _skip("derived", "DERIVED/SECONDARY image (set ingest.skip_derived: false to score these)")
    rows, columns = _int(ds.get("Rows")), _int(ds.get("Columns"))
    if not rows or not columns:
        raise _skip("no_pixels", "no Rows/Columns")
    n_frames = _checked_size(ds, rows, columns, pixels, limits)
    return _record(path, st, ds, sop_class, image_type, rows, columns, n_frames,
                   _native_pixels(ds, pixels, rows * columns * n_frames))


def _checked_size(ds: Dataset, rows: int, columns: int, pixels: _Pixels, limits: HeaderLimits) -> int:
    """The frame count, once the announced image size is sane and the pixel data can hold it."""
    def over(name: str, value: int, limit: int, key: str) -> DicomSkip:
        return _skip("header_limits", f"{name} {value} > {limit} (ingest.limits.{key})")

    if rows < 0 or columns < 0:
        raise _skip("header_limits", f"Rows {rows} x Columns {columns} is not an image size")
    if rows > limits.max_rows:
        raise over("Rows", rows, limits.max_rows, "max_rows")
    if columns > limits.max_columns:
        raise over("Columns", columns, limits.max_columns, "max_columns")
    raw_frames = ds.get("NumberOfFrames")
    frames = _int(raw_frames)
    if raw_frames not in (None, "") and frames is None:
        raise _skip("malformed_header", f"NumberOfFrames {clean_text(raw_frames, 40)!r} is not a number")
    frames = 1 if frames in (None, 0) else frames  # 0: some writers mean "single frame" (pydicom reads it so)
    if frames < 0:
        raise _skip("header_limits", f"NumberOfFrames {frames} is not a frame count")
    if frames > limits.max_frames:
        raise over("NumberOfFrames", frames, limits.max_frames, "max_frames")
    bits = _int(ds.get("BitsAllocated"))
    if bits is None:
        raise _skip("header_limits", "BitsAllocated missing")
    if bits < 1 or (bits != 1 and bits % 8):
        raise _skip("header_limits", f"BitsAllocated {bits} is not 1 or a multiple of 8")
    if bits > limits.max_bits_allocated:
        raise over("BitsAllocated", bits, limits.max_bits_allocated, "max_bits_allocated")
    stored = _int(ds.get("BitsStored"))
    if stored is not None and not 1 <= stored <= bits:
        raise _skip("header_limits", f"BitsStored {stored} is not within 1..BitsAllocated {bits}")
    samples = _int(ds.get("SamplesPerPixel"))
    samples = 1 if samples is None else samples
    if samples not in (1, 3):
        raise _skip("header_limits", f"SamplesPerPixel {samples} is not 1 or 3")
    frame_bits = rows * columns * samples * bits
    announced = (frame_bits * frames + 7) // 8
    if announced > limits.max_pixel_bytes:
        raise _skip("header_limits", f"pixel data of {announced} bytes > {limits.max_pixel_bytes} "
                    "(ingest.limits.max_pixel_bytes)")
    if not pixels.present:
        raise _skip("no_pixels", "no PixelData element")
    if pixels.length is not None:  # native: the element's length says what the file holds
        capacity = pixels.length * 8 // frame_bits
        if frames > 1 and capacity < frames:
            raise _skip("header_limits", f"NumberOfFrames {frames} but the pixel data holds {capacity} frame(s)")
        if pixels.length < announced:
            raise _skip("header_limits", f"pixel data holds {pixels.length} bytes, the header announces "
                        f"{announced} (Rows x Columns x SamplesPerPixel x BitsAllocated/8 x NumberOfFrames)")
    elif (pixels.fragments is not None and not _meta(ds, "TransferSyntaxUID").startswith(_VIDEO_SYNTAX_PREFIX)
          and pixels.fragments < frames):  # each frame has at least one fragment of its own (PS3.5 A.4)
        raise _skip("header_limits", f"NumberOfFrames {frames} but the compressed pixel data has "
                    f"{pixels.fragments} fragment(s)")
    return frames


_SEQ_DELIMITER_LE = bytes.fromhex("feffdde000000000")
_ITEM_TAG_LE = bytes.fromhex("feff00e0")
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}


@dataclass(frozen=True)
class _Pixels:
    """What follows the header: is the PixelData element there, complete, and how much does it hold."""

    complete: bool
    present: bool = False
    length: int | None = None  # native pixel data: bytes in the element ...
    start: int | None = None  # ... and where they start in the file
    fragments: int | None = None  # encapsulated: fragments seen (counted up to the frame limit + 1)


def _pixel_data(fh: BinaryIO, ds: Dataset, size: int, max_frames: int) -> _Pixels:
    """Whether the PixelData element that follows the header is entirely in the file, and its size.

    ``stop_before_pixels`` leaves the file positioned at the PixelData tag. Native pixel data has a
    length to check against the file size; encapsulated (compressed) data is a run of items that must
    end with the sequence delimitation item. Items are counted (8 bytes read per item, at most
    ``max_frames`` + 2 of them); past that the delimiter is looked for near the end of the file.
    """
    syntax = _meta(ds, "TransferSyntaxUID")
    big = syntax == "1.2.840.10008.1.2.2"
    implicit = syntax == "1.2.840.10008.1.2"
    pos = fh.tell()
    head = fh.read(12)
    if len(head) < 8:
        return _Pixels(complete=False)
    order: Literal["big", "little"] = "big" if big else "little"
    group, elem = int.from_bytes(head[0:2], order), int.from_bytes(head[2:4], order)
    if (group, elem) != (0x7FE0, 0x0010):
        # some other trailing element: pixels were not expected here (a smaller tag: the file goes on)
        return _Pixels(complete=(group, elem) > (0x7FE0, 0x0010))
    if implicit:
        length, start = int.from_bytes(head[4:8], order), pos + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return _Pixels(complete=False, present=True)
        length, start = int.from_bytes(head[8:12], order), pos + 12
    else:
        length, start = int.from_bytes(head[6:8], order), pos + 8
    if length != 0xFFFFFFFF:
        return _Pixels(complete=start + length <= size, present=True, length=length, start=start)
    at, items = start, 0
    while items <= max_frames + 1:
        fh.seek(at)
        item = fh.read(8)
        if len(item) < 8:
            return _Pixels(complete=False, present=True)
        if item == _SEQ_DELIMITER_LE:
            return _Pixels(complete=True, present=True, fragments=max(items - 1, 1) if items else 0)
        if item[:4] != _ITEM_TAG_LE:
            raise _skip("malformed_header", "compressed pixel data is not a sequence of fragments")
        at += 8 + int.from_bytes(item[4:8], "little")
        if at > size:
            return _Pixels(complete=False, present=True)
        items += 1
    fh.seek(max(start, size - 1024))
    return _Pixels(complete=_SEQ_DELIMITER_LE in fh.read(), present=True, fragments=items - 1)


_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")  # implicit and explicit VR


def _native_pixels(ds: Dataset, pixels: _Pixels, count: int) -> tuple[int, int, int, int] | None:
    """Where uncompressed monochrome pixels of 8, 16 or 32 bits start, and how to read them; else None."""
    bits, stored = _int(ds.get("BitsAllocated")), _int(ds.get("BitsStored"))
    representation, samples = _int(ds.get("PixelRepresentation")), _int(ds.get("SamplesPerPixel"))
    if (pixels.start is None or pixels.length is None or _meta(ds, "TransferSyntaxUID") not in _NATIVE_LITTLE_ENDIAN
            or bits not in (8, 16, 32) or samples not in (None, 1) or representation not in (0, 1)):
        return None
    stored = bits if stored is None else stored
    if not 1 <= stored <= bits or pixels.length < count * (bits // 8):
        return None
    return pixels.start, bits, stored, representation


def _record(path: str, st: os.stat_result, ds: Dataset, sop_class: str, image_type: tuple[str, ...], rows: int,
            columns: int, n_frames: int, native: tuple[int, int, int, int] | None) -> InstanceRecord:
    frames = _frames(ds, n_frames)
    spacing = _physical_floats(ds.get("PixelSpacing"), "PixelSpacing") or _shared_spacing(ds)
    mosaic = describe_mosaic(ds, image_type, rows, columns)
    announced = _announced_tiles(ds) if mosaic is None and {"MOSAIC", "VFRAME"} & set(image_type) else 0
    if announced > 1:
        raise _skip("header_limits", f"{announced} mosaic tiles cannot be cut from a {rows} x {columns} image")
    if mosaic is None and "MOSAIC" in image_type:
        # Scored whole, a mosaic is one image of many slices side by side: its slices must be cut or nothing.
        raise _skip("malformed_header", "a MOSAIC image with no tile count and no AcquisitionMatrix that tiles it")
    # Enhanced MR keeps acquisition attributes in the functional groups, not at the top level.
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    first_frame = _first(ds.get("PerFrameFunctionalGroupsSequence"))
    phase = ds.get("InPlanePhaseEncodingDirection") or _item_attr(shared, "MRFOVGeometrySequence",
                                                                 "InPlanePhaseEncodingDirection")
    tr = ds.get("RepetitionTime") or _item_attr(shared, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
    te = ds.get("EchoTime") or _item_attr(first_frame, "MREchoSequence", "EffectiveEchoTime") or _item_attr(
        shared, "MREchoSequence", "EffectiveEchoTime")
    ti = ds.get("InversionTime") or _item_attr(shared, "MRModifierSequence", "InversionTimes")
    window = None
    wc, ww = _floats(ds.get("WindowCenter")), _floats(ds.get("WindowWidth"))
    if wc and ww:
        window = (wc[0], ww[0])
    # Every string below is cleaned by InstanceRecord itself (controls -> spaces, bounded length).
    return InstanceRecord(
        path=path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        sop_class_uid=sop_class,
        transfer_syntax=str(_meta(ds, "TransferSyntaxUID")),
        modality=str(ds.get("Modality", "")).upper(),
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        model_name=str(ds.get("ManufacturerModelName", "") or ""),
        image_type=image_type,
        series_number=_int(ds.get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        protocol_name=str(ds.get("ProtocolName", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""),
        instance_number=_int(ds.get("InstanceNumber")),
        acquisition_number=_int(ds.get("AcquisitionNumber")),
        rows=rows,
        columns=columns,
        number_of_frames=n_frames,
        pixel_spacing=(spacing[0], spacing[1]) if spacing and len(spacing) >= 2 else None,
        slice_thickness=_float(ds.get("SliceThickness")),
        frames=frames,
        images_in_acquisition=_int(ds.get("ImagesInAcquisition")),
        number_of_temporal_positions=_int(ds.get("NumberOfTemporalPositions")),
        mosaic_tiles=mosaic.tiles if mosaic else None,
        mosaic_grid=mosaic.grid if mosaic and mosaic.grid[0] != mosaic.grid[1] else None,
        mosaic_positions=mosaic.positions if mosaic else (),
        mr_acquisition_type=str(ds.get("MRAcquisitionType", "") or ""),
        scanning_sequence=_texts(ds.get("ScanningSequence")),
        sequence_variant=_texts(ds.get("SequenceVariant")),
        sequence_name=str(ds.get("SequenceName", "") or ds.get("PulseSequenceName", "") or ""),
        echo_time=_float(te),
        repetition_time=_float(tr),
        inversion_time=_float(ti),
        diffusion_b_value=_float(ds.get("DiffusionBValue")) if "DiffusionBValue" in ds else _ge_b_value(ds),
        complex_component=_complex_component(ds, shared, first_frame),
        convolution_kernel=_texts(ds.get("ConvolutionKernel")),
        contrast_agent=str(ds.get("ContrastBolusAgent", "") or ""),
        phase_encode_direction={"COLUMN": "COL"}.get(str(phase or "").upper(), str(phase or "").upper()),
        field_strength=_float(ds.get("MagneticFieldStrength")),
        kvp=_float(ds.get("KVP")),
        exposure_mas=_float(ds.get("Exposure")),
        window=window,
        native_pixels=native,
    )


def _frames(ds: Dataset, n: int) -> tuple[FrameGeometry, ...]:
    """One geometry per frame: classic images have one; enhanced objects carry per-frame groups.

    ``n`` is the checked frame count (within ``ingest.limits.max_frames`` and what the pixel data holds):
    nothing here is sized by the header's own NumberOfFrames.
    """
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    per_frame = list(per_frame_seq[:n]) if per_frame_seq else []
    if not per_frame:
        geom = FrameGeometry(
            position=_vec3(ds.get("ImagePositionPatient"))
            or _vec3(_item_attr(shared, "PlanePositionSequence", "ImagePositionPatient")),
            orientation=_vec6(ds.get("ImageOrientationPatient"))
            or _vec6(_item_attr(shared, "PlaneOrientationSequence", "ImageOrientationPatient")),
            rescale_slope=_rescale(ds.get("RescaleSlope"), "RescaleSlope", _item_attr(
                shared, "PixelValueTransformationSequence", "RescaleSlope"), 1.0),
            rescale_intercept=_rescale(ds.get("RescaleIntercept"), "RescaleIntercept", _item_attr(
                shared, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
            temporal_index=max(0, (_int(ds.get("TemporalPositionIdentifier")) or 1) - 1),
        )
        return (geom,) * n if n > 1 else (geom,)
    out = []
    for item in per_frame:
        def attr(seq: str, name: str, item: Any = item) -> Any:
            value = _item_attr(item, seq, name)
            return value if value is not None else _item_attr(shared, seq, name)

        temporal = _int(attr("FrameContentSequence", "TemporalPositionIndex"))
        out.append(FrameGeometry(
            position=_vec3(attr("PlanePositionSequence", "ImagePositionPatient")),
            orientation=_vec6(attr("PlaneOrientationSequence", "ImageOrientationPatient")),
            rescale_slope=_rescale(attr("PixelValueTransformationSequence", "RescaleSlope"), "RescaleSlope",
                                   None, 1.0),
            rescale_intercept=_rescale(attr("PixelValueTransformationSequence", "RescaleIntercept"),
                                       "RescaleIntercept", None, 0.0),
            temporal_index=max(0, (temporal or 1) - 1),
        ))
    return tuple(out)


def scan_tree(root: str | os.PathLike[str], *, skip_derived: bool = True, skip_localizers: bool = True,
              skipped: dict[str, str] | None = None, limits: HeaderLimits | None = None, max_depth: int = 32,
              follow_links: str = "inside") -> dict[str, list[InstanceRecord]]:
    """Index every file under ``root`` and group by SeriesInstanceUID. Skips are logged, never raised."""
    series: dict[str, list[InstanceRecord]] = defaultdict(list)
    # the agent's own walk: same files, same order, same names skipped
    for path in walk_files(root, max_depth=max_depth, follow_links=follow_links):
        try:
            rec = read_header(path, skip_derived=skip_derived, skip_localizers=skip_localizers, limits=limits)
        except DicomSkip as skip:
            log.debug("skip %s: %s", printable_path(os.path.basename(path)), skip)
            if skipped is not None:
                skipped[path] = skip.reason
            continue
        series[rec.series_uid].append(rec)
    return dict(series)


def _skip(reason: str, detail: str, retry: bool = False) -> DicomSkip:
    return DicomSkip(reason, detail, retry=retry)


def _describe(exc: BaseException, path: str) -> str:
    """A short detail for a skip: the exception's type and first words, never the file's path or name."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc)
        for name in (path, os.path.basename(path)):
            if name:
                text = text.replace(name, "<file>")
    text = " ".join(clean_text(text, 400).split())
    return clean_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 160)


def _series_uid(ds: Dataset) -> str | None:
    """The header's SeriesInstanceUID when it can be read at all (cleaned like the record's), else None."""
    try:
        value = ds.get("SeriesInstanceUID")
        return clean_text(value) or None if value is not None else None
    except Exception:  # noqa: BLE001 - a broken UID is one more thing this header got wrong
        return None


def _meta(ds: Dataset, name: str) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get(name, "")) if meta is not None else ""


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in _list(value)[:TUPLE_LIMIT])


def _floats(value: Any) -> list[float] | None:
    try:
        items = [float(v) for v in _list(value)]
    except (TypeError, ValueError, OverflowError):
        return None
    return items if items and all(math.isfinite(v) for v in items) else None


def _rescale(value: Any, name: str, fallback: Any, default: float) -> float:
    """RescaleSlope/Intercept: absent -> ``fallback`` (the shared group's), then ``default``.

    Present but not a finite number is a malformed header, not "1.0": guessing the slope of a CT would
    score wrong Hounsfield units as if they were right. (Finite but absurd values are kept: ``plan_series``
    refuses them with the value in its message.)
    """
    for candidate in (value, fallback):
        if candidate is None or candidate == "":
            continue
        f = _float(candidate)
        if f is None:
            raise _skip("malformed_header", f"{name} {clean_text(candidate, 40)!r} is not a number")
        return f
    return default


def _physical_floats(value: Any, name: str) -> list[float] | None:
    """Like ``_floats``, but a value that is present and not all finite numbers is a malformed header."""
    if value is None or value == "":
        return None
    items = _floats(value)
    if items is None:
        raise _skip("malformed_header", f"{name} {clean_text(value, 40)!r} is not a number")
    return items


_INT_RANGE = 2**31  # IS is a 32-bit signed integer; beyond that a value is noise, not a count or an index


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(f) if f is not None and -_INT_RANGE <= f < _INT_RANGE else None


def _vec3(value: Any) -> tuple[float, float, float] | None:
    items = _floats(value)
    return (items[0], items[1], items[2]) if items and len(items) == 3 else None


def _vec6(value: Any) -> tuple[float, float, float, float, float, float] | None:
    items = _floats(value)
    return (items[0], items[1], items[2], items[3], items[4], items[5]) if items and len(items) == 6 else None


def _first(seq: Any) -> Dataset | None:
    return seq[0] if seq else None


def _item_attr(item: Dataset | None, seq_name: str, attr: str) -> Any:
    if item is None:
        return None
    inner = _first(item.get(seq_name))
    return inner.get(attr) if inner is not None else None


def _shared_spacing(ds: Dataset) -> list[float] | None:
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    spacing = _physical_floats(_item_attr(shared, "PixelMeasuresSequence", "PixelSpacing"), "PixelSpacing")
    if spacing:
        return spacing
    per = _first(ds.get("PerFrameFunctionalGroupsSequence"))
    return _physical_floats(_item_attr(per, "PixelMeasuresSequence", "PixelSpacing"), "PixelSpacing")


GE_B_VALUE = Tag(0x0043, 0x1039)  # GEMS_PARM_01 "Slop_int_6..9": the first value is the b-value
_GE_B_OFFSET = 1_000_000_000  # some GE releases add 1e9 to the b-value (dcm2niix subtracts it too)


def _ge_b_value(ds: Dataset) -> float | None:
    """GE keeps the b-value of older DWI/DTI in a private tag, not in DiffusionBValue (a GE DTI was typed
    EPI without it). Only read under GE's own private creator; an unphysical value is no value."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper() or GE_B_VALUE not in ds:
        return None
    creator = ds.get((0x0043, 0x0010))
    if creator is None or str(creator.value).strip() != "GEMS_PARM_01":
        return None
    b = _float(ds[GE_B_VALUE].value)
    if b is not None and b >= _GE_B_OFFSET:
        b -= _GE_B_OFFSET
    return b if b is not None and 0.0 <= b <= 100_000.0 else None


GE_COMPLEX = Tag(0x0043, 0x102F)  # GEMS_PARM_01 image type: 0 magnitude, 1 phase, 2 real, 3 imaginary
_GE_COMPLEX_NAMES = {0: "MAGNITUDE", 1: "PHASE", 2: "REAL", 3: "IMAGINARY"}


def _complex_component(ds: Dataset, shared: Dataset | None, first_frame: Dataset | None) -> str:
    """Magnitude or phase: ComplexImageComponent (enhanced MR: in the frame type), else GE's private image type.

    GE types its phase images ORIGINAL\\PRIMARY\\OTHER like magnitude ones: only this tag tells them apart.
    """
    value = ds.get("ComplexImageComponent") or _item_attr(first_frame, "MRImageFrameTypeSequence",
                                                          "ComplexImageComponent") or _item_attr(
        shared, "MRImageFrameTypeSequence", "ComplexImageComponent")
    if value:
        return str(value).upper()
    if "GE" in str(ds.get("Manufacturer", "")).upper() and GE_COMPLEX in ds:
        creator = ds.get((0x0043, 0x0010))
        if creator is not None and str(creator.value).strip() == "GEMS_PARM_01":
            return _GE_COMPLEX_NAMES.get(_int(ds[GE_COMPLEX].value) or 0, "")
    return ""


def _announced_tiles(ds: Dataset) -> int:
    """The tile count a mosaic header announces (Siemens or UIH), 0 when none: to name a mosaic that cannot fit."""
    for tag in (SIEMENS_MOSAIC_TILES, UIH_SLICES):
        if tag in ds:
            value = ds[tag].value
            if isinstance(value, (bytes, bytearray)):
                return int.from_bytes(bytes(value[:2]), "little") if len(value) >= 2 else 0
            return _int(value) or 0
    return 0
