"""Poison files for the fault tests, each generated from a good generated file (no binaries are committed).

Every poison starts from a clean phantom (``mediqa.agent.samples.write_phantom_ct``, or the MR and enhanced
multi-frame MR copies made here) and breaks one thing, either through pydicom (``with_changes``) or by
patching the bytes pydicom wrote (``patch_element``, ``insert_before``): some faults cannot be written
through pydicom at all (an unknown VR, a value the header says is there but the file does not hold).

``fuzz_cases`` is the seeded byte-flipper of the fuzz test, ``make_deep_tree``/``remove_tree`` build and
remove folder trees deeper than Python's recursion limit without recursing (``shutil.rmtree`` and
therefore pytest's own tmp cleanup hit RecursionError on them).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from mediqa.agent.samples import write_phantom_ct

CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")
HTJ2K_SYNTAXES = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
MPEG2_MAIN = "1.2.840.10008.1.2.4.100"
PIXEL_DATA_TAG = (0x7FE0, 0x0010)
DEEP = 1100  # folder levels of the deep-tree tests: past Python's default recursion limit (1000)


# --- good files ------------------------------------------------------------------------------------------
def _fixed_uids(path: Path, name: str) -> None:
    """Replace write_phantom_ct's random UIDs with ones derived from ``name``: the bytes become reproducible."""
    ds = pydicom.dcmread(path)
    for attr in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        setattr(ds, attr, generate_uid(entropy_srcs=[name.rsplit("/", 1)[0], attr]))
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[name, "sop"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def good_ct(dest: Path, slices: int = 4, size: int = 96, seed: int = 0) -> list[Path]:
    """A clean phantom CT series (the project's generator), with deterministic UIDs."""
    write_phantom_ct(dest, noise_hu=4.0, seed=seed, slices=slices, size=size)
    paths = sorted(dest.glob("*.dcm"))
    for p in paths:
        _fixed_uids(p, f"ct{seed}/{p.name}")
    return paths


def good_mr(dest: Path, slices: int = 3, size: int = 64, seed: int = 0) -> list[Path]:
    """An MR-like series made from the CT phantom: MR SOP class and attributes, no rescale, implicit VR."""
    ct = good_ct(dest / "_ct", slices=slices, size=size, seed=seed)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for p in ct:
        ds = pydicom.dcmread(p)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE
        ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "MR", "MedIQA phantom", "BRAIN"
        ds.SeriesDescription, ds.ProtocolName = "t2_tse_tra", "T2 TSE"
        for attr in ("RescaleSlope", "RescaleIntercept", "ConvolutionKernel"):
            delattr(ds, attr)
        ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "SE", "SK", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.MagneticFieldStrength = 4000, 90, 3
        ds.InPlanePhaseEncodingDirection = "ROW"
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        target = dest / p.name
        ds.save_as(target, enforce_file_format=True)
        out.append(target)
        p.unlink()
    (dest / "_ct").rmdir()
    return out


def good_enhanced_mr(dest: Path, frames: int = 4, size: int = 48) -> Path:
    """One Enhanced MR object: ``frames`` frames, per-frame plane positions, shared orientation and spacing."""
    dest.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["emr", "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = dest / "enhanced.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["emr", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["emr", "series"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["emr", "for"])
    ds.Modality, ds.Manufacturer, ds.SeriesDescription = "MR", "MedIQA phantom", "t1_mprage_enh"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.SeriesNumber, ds.InstanceNumber = 5, 1
    ds.PatientName, ds.PatientID = "PHANTOM", "PHANTOM"
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared = Dataset()
    orient, measures, timing = Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [1.0, 1.0], 2.0
    timing.RepetitionTime = 2300
    shared.PlaneOrientationSequence = DicomSequence([orient])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.MRTimingAndRelatedParametersSequence = DicomSequence([timing])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in range(frames):
        item, pos, content = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [-24.0, -24.0, 2.0 * k]
        content.InStackPositionNumber = k + 1
        item.PlanePositionSequence = DicomSequence([pos])
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    yy, xx = np.mgrid[:size, :size] - size / 2
    head = (np.hypot(xx, yy) < size * 0.4).astype(np.float64)
    stack = np.stack([head * (400 + 100 * k) for k in range(frames)])
    ds.PixelData = np.round(stack).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# --- making poisons --------------------------------------------------------------------------------------
def with_changes(src: Path, dest: Path, **attrs: object) -> Path:
    """Copy ``src`` with DICOM attributes changed through pydicom (a value of None deletes the attribute)."""
    ds = pydicom.dcmread(src)
    with quiet():
        for name, value in attrs.items():
            if value is None:
                if name in ds:
                    delattr(ds, name)
            else:
                setattr(ds, name, value)
        ds.save_as(dest)
    return dest


def _tag_bytes(tag: tuple[int, int]) -> bytes:
    return tag[0].to_bytes(2, "little") + tag[1].to_bytes(2, "little")


def find_element(data: bytes, tag: tuple[int, int], vr: str) -> int:
    """Offset of an explicit-VR little-endian element with this tag and VR (its first occurrence)."""
    at = data.find(_tag_bytes(tag) + vr.encode(), 132)
    if at < 0:
        raise LookupError(f"element {tag} {vr} not found")
    return at


def patch_element(data: bytes, tag: tuple[int, int], vr: str, *, new_vr: str | None = None,
                  new_value: bytes | None = None) -> bytes:
    """Raw bytes with one short-VR element's VR and/or value replaced (its length field follows the value).

    Only for elements of the top-level data set or of an item with undefined length: an enclosing
    defined-length item would need its length fixed too, so a changed value length is refused there.
    """
    at = find_element(data, tag, vr)
    length = int.from_bytes(data[at + 6:at + 8], "little")
    value = data[at + 8:at + 8 + length] if new_value is None else new_value
    if len(value) % 2:
        value += b" "
    head = _tag_bytes(tag) + (new_vr or vr).encode() + len(value).to_bytes(2, "little")
    return data[:at] + head + value + data[at + 8 + length:]


def insert_before_pixels(data: bytes, blob: bytes) -> bytes:
    """Raw bytes with ``blob`` (encoded elements) inserted just before the PixelData element."""
    at = data.find(_tag_bytes(PIXEL_DATA_TAG), 132)
    return data[:at] + blob + data[at:]


def _sq(tag: tuple[int, int], payload: bytes, *, undefined: bool = False) -> bytes:
    length = 0xFFFFFFFF if undefined else len(payload)
    return _tag_bytes(tag) + b"SQ\0\0" + length.to_bytes(4, "little") + payload


def _item(payload: bytes, *, undefined: bool = False) -> bytes:
    length = 0xFFFFFFFF if undefined else len(payload)
    return b"\xfe\xff\x00\xe0" + length.to_bytes(4, "little") + payload


_ITEM_END = b"\xfe\xff\x0d\xe0\0\0\0\0"
_SEQ_END = b"\xfe\xff\xdd\xe0\0\0\0\0"


def nested_sequences(depth: int) -> bytes:
    """ReferencedImageSequence items nested ``depth`` deep (undefined lengths): pydicom parses it recursively."""
    opening = _tag_bytes((0x0008, 0x1140)) + b"SQ\0\0" + b"\xff" * 4 + b"\xfe\xff\x00\xe0" + b"\xff" * 4
    return opening * depth + (_ITEM_END + _SEQ_END) * depth


def insert_in_order(data: bytes, before_tag: tuple[int, int], blob: bytes) -> bytes:
    """Raw bytes with ``blob`` inserted before the first top-level element with tag ``before_tag``."""
    at = data.find(_tag_bytes(before_tag), 132)
    if at < 0:
        raise LookupError(f"element {before_tag} not found")
    return data[:at] + blob + data[at:]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """pydicom warns when it writes or reads the invalid values a poison is made of: that is the point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def encoded(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    with quiet():
        ds.save_as(buf)
    return buf.getvalue()


def compressed(src: Path, dest: Path, syntax: str, *, payload: bytes | None = None,
               corrupt: str | None = None) -> Path:
    """Copy of ``src`` in an encapsulated transfer syntax.

    Encodable syntaxes (RLE, JPEG 2000, JPEG-LS) are really encoded first; ``corrupt`` then damages the
    one frame ("truncate": an eighth of it, "garbage": its first 64 bytes followed by noise, "zeros"). For
    syntaxes nothing here can encode (HTJ2K, MPEG-2) the frame is ``payload`` (default: noise).
    """
    ds = pydicom.dcmread(src)
    encoders = {RLELossless: RLELossless, JPEG2000Lossless: JPEG2000Lossless, JPEGLSLossless: JPEGLSLossless}
    rng = np.random.default_rng(len(syntax))
    if syntax in encoders:
        ds.compress(encoders[UID(syntax)])
        frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    else:
        ds.compress(JPEG2000Lossless)  # sets the encapsulated-pixel attributes; the syntax is replaced below
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        frame = payload if payload is not None else rng.integers(0, 256, 4000).astype(np.uint8).tobytes()
    if corrupt == "truncate":
        frame = frame[:max(16, len(frame) // 8)]
    elif corrupt == "garbage":
        keep = 0 if syntax == RLELossless else 64  # an RLE header is what the decoder checks first
        frame = frame[:keep] + rng.integers(0, 256, len(frame)).astype(np.uint8).tobytes()
    elif corrupt == "zeros":
        frame = b"\0" * 64
    if len(frame) % 2:
        frame += b"\0"
    ds.PixelData = encapsulate([frame])
    ds.save_as(dest)
    return dest


# --- header poisons: file -> (bytes, expected DicomSkip reason) -------------------------------------------
Poison = Callable[[bytes], bytes]


def _set(**attrs: object) -> Poison:
    def make(good: bytes) -> bytes:
        ds = pydicom.dcmread(io.BytesIO(good))
        with quiet():
            for name, value in attrs.items():
                setattr(ds, name, value)
        return encoded(ds)
    return make


def _raw_value(tag: tuple[int, int], vr: str, value: bytes) -> Poison:
    return lambda good: patch_element(good, tag, vr, new_value=value)


def _raw_vr(tag: tuple[int, int], vr: str, new_vr: str) -> Poison:
    return lambda good: patch_element(good, tag, vr, new_vr=new_vr)


def _raw_number_of_frames(text: bytes) -> Poison:
    """NumberOfFrames written as raw IS bytes (pydicom would refuse some of these values)."""
    def make(good: bytes) -> bytes:
        blob = _tag_bytes((0x0028, 0x0008)) + b"IS" + len(text).to_bytes(2, "little") + text
        return insert_in_order(good, (0x0028, 0x0010), blob)  # NumberOfFrames sorts before Rows
    return make


# Poisons of a single-frame phantom CT slice (explicit VR little endian, 96 x 96, 16 bits).
CT_HEADER_POISONS: dict[str, tuple[Poison, str]] = {
    # 1. malformed values that pydicom only trips over when the record is built
    "unknown_vr_body_part": (_raw_vr((0x0018, 0x0015), "CS", "ZZ"), "malformed_header"),
    "unknown_vr_series_description": (_raw_vr((0x0008, 0x103E), "LO", "QQ"), "malformed_header"),
    "rescale_slope_not_a_number": (_raw_value((0x0028, 0x1053), "DS", b"abc"), "malformed_header"),
    "rescale_intercept_not_a_number": (_raw_value((0x0028, 0x1052), "DS", b"-10x4"), "malformed_header"),
    "deeply_nested_sequence": (lambda good: insert_in_order(good, (0x0010, 0x0010), nested_sequences(3000)),
                               "malformed_header"),
    # 2. header sanity limits (before anything is allocated)
    "frames_2e9": (_raw_number_of_frames(b"2000000000"), "header_limits"),
    "frames_1e7": (_raw_number_of_frames(b"10000000"), "header_limits"),
    "frames_negative": (_raw_number_of_frames(b"-5"), "header_limits"),
    "frames_more_than_pixels": (_raw_number_of_frames(b"3 "), "header_limits"),
    "rows_65535": (_set(Rows=65535), "header_limits"),
    "columns_9000": (_set(Columns=9000), "header_limits"),
    "bits_allocated_12": (_set(BitsAllocated=12), "header_limits"),
    "bits_allocated_64": (_set(BitsAllocated=64), "header_limits"),
    "bits_allocated_0": (_set(BitsAllocated=0), "header_limits"),
    "samples_per_pixel_7": (_set(SamplesPerPixel=7), "header_limits"),
    "rows_more_than_pixels": (_set(Rows=200, Columns=200), "header_limits"),
    "pixel_bytes_over_limit": (_set(Rows=8192, Columns=8192, NumberOfFrames=40), "header_limits"),
}


def enhanced_header_poisons() -> dict[str, tuple[Poison, str]]:
    """Poisons of the enhanced MR object: broken values inside its functional-group sequences."""
    return {
        # ImagePositionPatient inside the first per-frame item gets an unknown VR (same length: items stay valid)
        "per_frame_position_unknown_vr": (_raw_vr((0x0020, 0x0032), "DS", "ZZ"), "malformed_header"),
        "shared_spacing_unknown_vr": (_raw_vr((0x0028, 0x0030), "DS", "ZZ"), "malformed_header"),
        "frames_beyond_pixel_data": (_raw_value((0x0028, 0x0008), "IS", b"400"), "header_limits"),
        "frames_2e9": (_raw_value((0x0028, 0x0008), "IS", b"2000000000"), "header_limits"),
    }


CONTROL_TEXT = "Head\x1b[2J\x1b[31mFAKE ALERT\r\nok\x07\x85\u2028\u202e"


def control_characters(good: bytes) -> bytes:
    """Console-forging controls (ESC sequences, CR/LF, BEL, C1 NEL, line separator, bidi override) in text."""
    ds = pydicom.dcmread(io.BytesIO(good))
    with quiet():
        _set_control_text(ds)
    return encoded(ds)


def _set_control_text(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "ISO_IR 192"
    for attr in ("SeriesDescription", "ProtocolName", "StudyDescription", "Manufacturer",
                 "ManufacturerModelName", "SequenceName", "ContrastBolusAgent"):
        setattr(ds, attr, CONTROL_TEXT)
    ds.BodyPartExamined = "HEAD\x1b]0;owned\x07"
    ds.ConvolutionKernel = ["B30f\x1b[1m", "x\ny"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL\r\x1b[K"]
    ds.SeriesDescription = CONTROL_TEXT * 40  # and long: 1,000+ characters


# --- fuzzing ---------------------------------------------------------------------------------------------
def fuzz_cases(bases: Sequence[tuple[str, bytes]], count: int, seed: int, *, window: int = 2048,
               max_flips: int = 8) -> Iterator[tuple[str, bytes]]:
    """``count`` damaged copies of the base files: 1..``max_flips`` bytes changed in the first ``window`` bytes.

    Half the changes flip one bit (a length or a VR letter off by a little), half replace the byte. The
    128-byte preamble is left alone (nothing reads it). Same seed, same cases.
    """
    rng = random.Random(seed)
    for i in range(count):
        name, base = bases[i % len(bases)]
        data = bytearray(base)
        edits = []
        for _ in range(rng.randint(1, max_flips)):
            pos = rng.randrange(128, min(window, len(data)))
            if rng.random() < 0.5:
                data[pos] ^= 1 << rng.randrange(8)
            else:
                data[pos] = rng.randrange(256)
            edits.append(pos)
        yield f"{i:04d}-{name}-{'-'.join(map(str, edits))}", bytes(data)


# --- deep trees ------------------------------------------------------------------------------------------
def make_deep_tree(root: Path, depth: int, name: str = "d") -> Path:
    """A chain of ``depth`` nested folders below ``root`` (made iteratively); returns the deepest folder."""
    path = os.fspath(root)
    for _ in range(depth):
        path = os.path.join(path, name)
        os.mkdir(path)
    return Path(path)


def remove_tree(root: Path) -> None:
    """Delete a folder tree of any depth without recursion (post-order with an explicit stack)."""
    top = os.fspath(root)
    if not os.path.lexists(top):
        return
    if not os.path.isdir(top) or os.path.islink(top):
        os.unlink(top)
        return
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        path, listed = stack.pop()
        if listed:
            os.rmdir(path)
            continue
        stack.append((path, True))
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                else:
                    os.unlink(entry.path)
