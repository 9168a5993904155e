"""Header-only indexing: one file -> one frozen ``InstanceRecord``, or a ``DicomSkip`` with a reason.

Pixels are never decoded here (``stop_before_pixels``), so indexing keeps up with a console
exporting hundreds of files a second. ``specific_tags`` is not used: measured on 512x512 CT it made
``dcmread`` about 3x slower (2.4 vs 0.7 ms per file), and pydicom converts element values lazily anyway.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections import defaultdict
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from mediqa.agent.config import HeaderLimits
from mediqa.agent.dicom.header_scan import scan_header
from mediqa.agent.dicom.mosaic import describe_mosaic
from mediqa.agent.dicom.pixel_extent import PixelExtent, native_pixel_layout, pixel_extent
from mediqa.agent.dicom.private_tags import announced_tiles, complex_component, ge_b_value
from mediqa.agent.dicom.records import (
    INTERRUPTS,
    TUPLE_LIMIT,
    FrameGeometry,
    InstanceRecord,
    clean_text,
    printable_path,
)
from mediqa.agent.dicom.values import (
    first_float,
    first_item,
    floats,
    item_attr,
    meta,
    physical_floats,
    rescale,
    series_uid_of,
    shared_spacing,
    texts,
    to_int,
    value_list,
    vec3,
    vec6,
)
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
                limits: HeaderLimits | None = None, scanner: bool = True) -> InstanceRecord:
    """Parse one file's header. Raises ``DicomSkip`` and nothing else (but KeyboardInterrupt/SystemExit).

    ``retry`` is set for maybe-half-written files. A complete file whose header pydicom cannot parse, or
    whose values break while the record is built (an unknown VR, an undecodable value, a nested sequence
    past the recursion limit, any exception at all), is ``malformed_header``; sizes beyond ``limits``
    (``ingest.limits``; None: the defaults) or beyond what the pixel data holds are ``header_limits``,
    checked before anything is allocated for them. Both name the series when the header did.
    pydicom's warnings about non-conformant values are collected here and logged at DEBUG, so a daemon
    (or a test run with warnings as errors) sees the same outcome for the same file.

    ``scanner`` (the default) walks the header with ``header_scan`` (about 3x faster, the same record,
    checked over every file the project holds); pydicom's ``dcmread`` reads what the walk does not cover
    and decides every lasting skip. ``scanner=False`` is pydicom alone, the reference of that test.
    """
    path = os.fspath(path)
    limits = limits if limits is not None else HeaderLimits()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                return _read_header(path, skip_derived, skip_localizers, limits, scan=scanner)
            except DicomSkip as skip:
                if not scanner or skip.retry:
                    raise
                # A file refused for good is refused by pydicom alone: the scanner never decides a skip.
                return _read_header(path, skip_derived, skip_localizers, limits, scan=False)
        finally:
            if caught:
                log.debug("pydicom warned %d time(s) while reading a header, first: %s", len(caught),
                          clean_text(caught[0].message, 160))


def _read_header(path: str, skip_derived: bool, skip_localizers: bool, limits: HeaderLimits,
                 scan: bool = True) -> InstanceRecord:
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
            ds = _parse(fh) if scan else pydicom.dcmread(fh, stop_before_pixels=True)
            pixels = pixel_extent(fh, ds, st.st_size, limits.max_frames)
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
    series_uid = series_uid_of(ds)
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


def _parse(fh: BinaryIO) -> Dataset:
    """The header by the fast walk, or by ``dcmread`` where the walk does not cover the file."""
    try:
        return scan_header(fh)[0]
    except INTERRUPTS:
        raise
    except Exception as exc:  # noqa: BLE001 - NotOrdinary, or a walk that met what it did not expect
        log.debug("header read by pydicom: %s", clean_text(exc, 120))
    fh.seek(0)
    return pydicom.dcmread(fh, stop_before_pixels=True)


# Video syntaxes: one fragment may hold many frames (elsewhere each frame has at least one fragment).
_VIDEO_SYNTAX_PREFIX = "1.2.840.10008.1.2.4.10"


def _checked_record(path: str, st: os.stat_result, ds: Dataset, pixels: PixelExtent, skip_derived: bool,
                    skip_localizers: bool, limits: HeaderLimits) -> InstanceRecord:
    # The file meta (first bytes of the file) names the SOP class even when the rest is still arriving.
    sop_class = str(meta(ds, "MediaStorageSOPClassUID") or ds.get("SOPClassUID", ""))
    if sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        raise _skip("dicomdir", "media directory, not an image")
    if sop_class not in IMAGE_SOP_CLASSES:
        raise _skip("not_ct_mr_image", f"SOP class {clean_text(sop_class, 64) or 'missing'}")
    if not pixels.complete:
        # pydicom parses a truncated header happily: without this check a half-written file would be indexed.
        raise _skip("incomplete", "pixel data missing or shorter than announced (still being written?)", retry=True)
    if "SeriesInstanceUID" not in ds or "SOPInstanceUID" not in ds:
        raise _skip("missing_uid", "no SeriesInstanceUID/SOPInstanceUID")
    image_type = tuple(str(v).upper() for v in value_list(ds.get("ImageType"))[:TUPLE_LIMIT])
    if skip_localizers and LOCALIZER_WORDS & set(image_type):
        raise _skip("localizer", "ImageType marks a localizer/scout")
    if skip_derived and image_type and (image_type[0] == "DERIVED" or "SECONDARY" in image_type[1:2]):
        raise _skip("derived", "DERIVED/SECONDARY image (set ingest.skip_derived: false to score these)")
    rows, columns = to_int(ds.get("Rows")), to_int(ds.get("Columns"))
    if not rows or not columns:
        raise _skip("no_pixels", "no Rows/Columns")
    n_frames = _checked_size(ds, rows, columns, pixels, limits)
    return _record(path, st, ds, sop_class, image_type, rows, columns, n_frames,
                   native_pixel_layout(ds, pixels, rows * columns * n_frames))


def _checked_size(ds: Dataset, rows: int, columns: int, pixels: PixelExtent, limits: HeaderLimits) -> int:
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
    frames = to_int(raw_frames)
    if raw_frames not in (None, "") and frames is None:
        raise _skip("malformed_header", f"NumberOfFrames {clean_text(raw_frames, 40)!r} is not a number")
    frames = 1 if frames in (None, 0) else frames  # 0: some writers mean "single frame" (pydicom reads it so)
    if frames < 0:
        raise _skip("header_limits", f"NumberOfFrames {frames} is not a frame count")
    if frames > limits.max_frames:
        raise over("NumberOfFrames", frames, limits.max_frames, "max_frames")
    bits = to_int(ds.get("BitsAllocated"))
    if bits is None:
        raise _skip("header_limits", "BitsAllocated missing")
    if bits < 1 or (bits != 1 and bits % 8):
        raise _skip("header_limits", f"BitsAllocated {bits} is not 1 or a multiple of 8")
    if bits > limits.max_bits_allocated:
        raise over("BitsAllocated", bits, limits.max_bits_allocated, "max_bits_allocated")
    stored = to_int(ds.get("BitsStored"))
    if stored is not None and not 1 <= stored <= bits:
        raise _skip("header_limits", f"BitsStored {stored} is not within 1..BitsAllocated {bits}")
    samples = to_int(ds.get("SamplesPerPixel"))
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
    elif (pixels.fragments is not None and not meta(ds, "TransferSyntaxUID").startswith(_VIDEO_SYNTAX_PREFIX)
          and pixels.fragments < frames):  # each frame has at least one fragment of its own (PS3.5 A.4)
        raise _skip("header_limits", f"NumberOfFrames {frames} but the compressed pixel data has "
                    f"{pixels.fragments} fragment(s)")
    return frames


def _record(path: str, st: os.stat_result, ds: Dataset, sop_class: str, image_type: tuple[str, ...], rows: int,
            columns: int, n_frames: int, native: tuple[int, int, int, int] | None) -> InstanceRecord:
    frames = _frames(ds, n_frames)
    spacing = physical_floats(ds.get("PixelSpacing"), "PixelSpacing") or shared_spacing(ds)
    mosaic = describe_mosaic(ds, image_type, rows, columns)
    announced = announced_tiles(ds) if mosaic is None and {"MOSAIC", "VFRAME"} & set(image_type) else 0
    if announced > 1:
        raise _skip("header_limits", f"{announced} mosaic tiles cannot be cut from a {rows} x {columns} image")
    if mosaic is None and "MOSAIC" in image_type:
        # Scored whole, a mosaic is one image of many slices side by side: its slices must be cut or nothing.
        raise _skip("malformed_header", "a MOSAIC image with no tile count and no AcquisitionMatrix that tiles it")
    # Enhanced MR keeps acquisition attributes in the functional groups, not at the top level.
    shared = first_item(ds.get("SharedFunctionalGroupsSequence"))
    first_frame = first_item(ds.get("PerFrameFunctionalGroupsSequence"))
    phase = ds.get("InPlanePhaseEncodingDirection") or item_attr(shared, "MRFOVGeometrySequence",
                                                                 "InPlanePhaseEncodingDirection")
    tr = ds.get("RepetitionTime") or item_attr(shared, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
    te = ds.get("EchoTime") or item_attr(first_frame, "MREchoSequence", "EffectiveEchoTime") or item_attr(
        shared, "MREchoSequence", "EffectiveEchoTime")
    ti = ds.get("InversionTime") or item_attr(shared, "MRModifierSequence", "InversionTimes")
    window = None
    wc, ww = floats(ds.get("WindowCenter")), floats(ds.get("WindowWidth"))
    if wc and ww:
        window = (wc[0], ww[0])
    # Every string below is cleaned by InstanceRecord itself (controls -> spaces, bounded length).
    return InstanceRecord(
        path=path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sop_instance_uid=str(ds.get("SOPInstanceUID")),  # both checked present above
        series_uid=str(ds.get("SeriesInstanceUID")),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        sop_class_uid=sop_class,
        transfer_syntax=str(meta(ds, "TransferSyntaxUID")),
        modality=str(ds.get("Modality", "")).upper(),
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        model_name=str(ds.get("ManufacturerModelName", "") or ""),
        image_type=image_type,
        series_number=to_int(ds.get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        protocol_name=str(ds.get("ProtocolName", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""),
        instance_number=to_int(ds.get("InstanceNumber")),
        acquisition_number=to_int(ds.get("AcquisitionNumber")),
        rows=rows,
        columns=columns,
        number_of_frames=n_frames,
        pixel_spacing=(spacing[0], spacing[1]) if spacing and len(spacing) >= 2 else None,
        slice_thickness=first_float(ds.get("SliceThickness")),
        frames=frames,
        images_in_acquisition=to_int(ds.get("ImagesInAcquisition")),
        number_of_temporal_positions=to_int(ds.get("NumberOfTemporalPositions")),
        mosaic_tiles=mosaic.tiles if mosaic else None,
        mosaic_grid=mosaic.grid if mosaic and mosaic.grid[0] != mosaic.grid[1] else None,
        mosaic_positions=mosaic.positions if mosaic else (),
        mr_acquisition_type=str(ds.get("MRAcquisitionType", "") or ""),
        scanning_sequence=texts(ds.get("ScanningSequence")),
        sequence_variant=texts(ds.get("SequenceVariant")),
        sequence_name=str(ds.get("SequenceName", "") or ds.get("PulseSequenceName", "") or ""),
        echo_time=first_float(te),
        repetition_time=first_float(tr),
        inversion_time=first_float(ti),
        diffusion_b_value=first_float(ds.get("DiffusionBValue")) if "DiffusionBValue" in ds else ge_b_value(ds),
        complex_component=complex_component(ds, shared, first_frame),
        convolution_kernel=texts(ds.get("ConvolutionKernel")),
        contrast_agent=str(ds.get("ContrastBolusAgent", "") or ""),
        phase_encode_direction={"COLUMN": "COL"}.get(str(phase or "").upper(), str(phase or "").upper()),
        field_strength=first_float(ds.get("MagneticFieldStrength")),
        kvp=first_float(ds.get("KVP")),
        exposure_mas=first_float(ds.get("Exposure")),
        window=window,
        native_pixels=native,
    )


def _frames(ds: Dataset, n: int) -> tuple[FrameGeometry, ...]:
    """One geometry per frame: classic images have one; enhanced objects carry per-frame groups.

    ``n`` is the checked frame count (within ``ingest.limits.max_frames`` and what the pixel data holds):
    nothing here is sized by the header's own NumberOfFrames.
    """
    shared = first_item(ds.get("SharedFunctionalGroupsSequence"))
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    per_frame = list(per_frame_seq[:n]) if per_frame_seq else []
    if not per_frame:
        geom = FrameGeometry(
            position=vec3(ds.get("ImagePositionPatient"))
            or vec3(item_attr(shared, "PlanePositionSequence", "ImagePositionPatient")),
            orientation=vec6(ds.get("ImageOrientationPatient"))
            or vec6(item_attr(shared, "PlaneOrientationSequence", "ImageOrientationPatient")),
            rescale_slope=rescale(ds.get("RescaleSlope"), "RescaleSlope", item_attr(
                shared, "PixelValueTransformationSequence", "RescaleSlope"), 1.0),
            rescale_intercept=rescale(ds.get("RescaleIntercept"), "RescaleIntercept", item_attr(
                shared, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
            temporal_index=max(0, (to_int(ds.get("TemporalPositionIdentifier")) or 1) - 1),
        )
        return (geom,) * n if n > 1 else (geom,)
    out = []
    for item in per_frame:
        def attr(seq: str, name: str, item: Any = item) -> Any:
            value = item_attr(item, seq, name)
            return value if value is not None else item_attr(shared, seq, name)

        temporal = to_int(attr("FrameContentSequence", "TemporalPositionIndex"))
        out.append(FrameGeometry(
            position=vec3(attr("PlanePositionSequence", "ImagePositionPatient")),
            orientation=vec6(attr("PlaneOrientationSequence", "ImageOrientationPatient")),
            rescale_slope=rescale(attr("PixelValueTransformationSequence", "RescaleSlope"), "RescaleSlope",
                                   None, 1.0),
            rescale_intercept=rescale(attr("PixelValueTransformationSequence", "RescaleIntercept"),
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


