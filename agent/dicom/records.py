"""Immutable header records: what the agent knows about one DICOM file without decoding pixels.

Records are persisted as JSON (``record_to_json``/``record_from_json``), never pickled: the state
database must not be a place from which loading data can run code. Every field is a plain value, a
tuple of them, or (``frames``) a tuple of ``FrameGeometry``; JSON turns tuples into lists, so decoding
turns them back, and a decoded record compares equal to the original.

Header text is untrusted: a SeriesDescription can hold ESC sequences, CR/LF or bidi overrides that
would forge lines on the console or in a log. Every text field but ``path`` is passed through
``clean_text`` whenever a record is made (by the reader, from JSON, by ``dataclasses.replace``), so
nothing downstream has to remember to. ``path`` is left exactly as the OS gave it (it may hold
surrogate escapes: ``os.fsdecode`` of a name that is not UTF-8).
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# What a reader lets through when it turns "anything this file did to us" into a skip or a SeriesError.
# Everything else is caught as BaseException on purpose: native decoders built with pyo3 (pylibjpeg-rle)
# panic with pyo3_runtime.PanicException, which derives from BaseException, not Exception.
INTERRUPTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)
TEXT_LIMIT = 200  # characters kept of one header string (LO is 64, LT 10240: descriptions never need more)
TUPLE_LIMIT = 32  # values kept of a multi-valued string (ImageType, ConvolutionKernel...)
# C0 and C1 controls, DEL, Unicode line/paragraph separators and the bidi embedding/override/isolate marks
# (they reorder what a terminal shows), and lone surrogates (not text at all: they cannot be printed).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _replacement(match: re.Match[str]) -> str:
    return "\ufffd" if "\ud800" <= match.group() <= "\udfff" else " "


def clean_text(value: object, limit: int = TEXT_LIMIT) -> str:
    """``value`` as one printable line: controls become spaces, lone surrogates U+FFFD, at most ``limit`` chars.

    Idempotent, so cleaning a cleaned record changes nothing (JSON round trips compare equal).
    """
    text = value if isinstance(value, str) else str(value)
    if not (text.isascii() and text.isprintable()):
        text = _UNSAFE.sub(_replacement, text)
    return text.strip()[:limit].strip()


def printable_path(path: str) -> str:
    """A path for a log line: undecodable bytes shown as U+FFFD, controls as spaces (never for opening files)."""
    return clean_text(path, limit=4096)


@dataclass(frozen=True)
class FrameGeometry:
    """Where one frame sits in patient space (per frame for enhanced multi-frame objects)."""

    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    temporal_index: int = 0  # time point / b-value / echo index within the series (0 = first)


@dataclass(frozen=True)
class InstanceRecord:
    """One DICOM instance, read header-only. Identifiers stay in memory; logs use ``series_key``."""

    path: str
    size: int
    mtime_ns: int
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    manufacturer: str = ""
    model_name: str = ""
    image_type: tuple[str, ...] = ()
    series_number: int | None = None
    series_description: str = ""
    protocol_name: str = ""
    body_part: str = ""
    study_description: str = ""
    instance_number: int | None = None
    acquisition_number: int | None = None
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    frames: tuple[FrameGeometry, ...] = ()
    # Hints from which the tracker can tell a series is complete before the quiet period ends.
    images_in_acquisition: int | None = None
    number_of_temporal_positions: int | None = None
    mosaic_tiles: int | None = None  # Siemens MOSAIC / UIH VFRAME: slices tiled into one image
    mosaic_grid: tuple[int, int] | None = None  # (rows, columns) of tiles; None: square (agent/dicom/mosaic.py)
    mosaic_positions: tuple[tuple[float, float, float], ...] = ()  # each tile's top-left voxel, patient mm
    complex_component: str = ""  # MAGNITUDE, PHASE, REAL, IMAGINARY (ComplexImageComponent, GE 0043,102F)
    # Attributes the prompt rules read (issue: salient slices and prompts).
    mr_acquisition_type: str = ""
    scanning_sequence: tuple[str, ...] = ()
    sequence_variant: tuple[str, ...] = ()
    sequence_name: str = ""
    echo_time: float | None = None
    repetition_time: float | None = None
    inversion_time: float | None = None
    diffusion_b_value: float | None = None
    convolution_kernel: tuple[str, ...] = ()
    contrast_agent: str = ""
    phase_encode_direction: str = ""
    field_strength: float | None = None
    kvp: float | None = None
    exposure_mas: float | None = None
    window: tuple[float, float] | None = None
    # (byte offset, BitsAllocated, BitsStored, PixelRepresentation) of native little-endian monochrome pixel
    # data: decoded by reading those bytes (agent/dicom/decode.py), without parsing the header again.
    native_pixels: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            clean = clean_text(value)
            if clean != value:
                object.__setattr__(self, name, clean)
        for name in _TEXT_TUPLE_FIELDS:
            values = getattr(self, name)
            clean_values = tuple(clean_text(v) for v in values[:TUPLE_LIMIT])
            if clean_values != values:
                object.__setattr__(self, name, clean_values)

    @property
    def series_key(self) -> str:
        return series_key(self.series_uid)

    @property
    def is_multiframe(self) -> bool:
        return self.number_of_frames > 1


_HINTS = typing.get_type_hints(InstanceRecord)
_TEXT_FIELDS = tuple(f.name for f in fields(InstanceRecord) if _HINTS[f.name] is str and f.name != "path")
_TEXT_TUPLE_FIELDS = tuple(f.name for f in fields(InstanceRecord) if _HINTS[f.name] == tuple[str, ...])


_RECORD_FIELDS = frozenset(f.name for f in fields(InstanceRecord)) - {"frames"}  # what JSON may set
_FRAME_FIELDS = frozenset(f.name for f in fields(FrameGeometry))


def series_key(series_uid: str) -> str:
    """Pseudonymous, stable key for a series: safe for logs, useless to re-identify a patient."""
    # surrogatepass: a UID string that is not valid Unicode still gets a key (valid strings: same bytes as UTF-8)
    return "s-" + hashlib.sha256(series_uid.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def record_to_dict(record: InstanceRecord) -> dict[str, Any]:
    """The record as JSON-ready values: tuples stay tuples here (``json`` writes them as lists)."""
    out: dict[str, Any] = {f.name: getattr(record, f.name) for f in fields(InstanceRecord)}
    out["frames"] = [{f.name: getattr(frame, f.name) for f in fields(FrameGeometry)} for frame in record.frames]
    return out


def record_from_dict(data: Mapping[str, Any]) -> InstanceRecord:
    """Inverse of ``record_to_dict`` (lists back to tuples). Keys the record does not have are ignored."""
    values = {k: _tuples(v) for k, v in data.items() if k in _RECORD_FIELDS}
    frames = tuple(FrameGeometry(**{k: _tuples(v) for k, v in frame.items() if k in _FRAME_FIELDS})
                   for frame in data.get("frames") or ())
    return InstanceRecord(**values, frames=frames)


def record_to_json(record: InstanceRecord) -> str:
    return json.dumps(record_to_dict(record), separators=(",", ":"))


def record_from_json(text: str | bytes) -> InstanceRecord:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"a stored record must be a JSON object, not {type(data).__name__}")
    return record_from_dict(data)


def _tuples(value: Any) -> Any:
    """JSON arrays back to the tuples the frozen records hold (nested ones too)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
