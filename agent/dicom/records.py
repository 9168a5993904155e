"""Immutable header records: what the agent knows about one DICOM file without decoding pixels.

Records are persisted as JSON (``record_to_json``/``record_from_json``), never pickled: the state
database must not be a place from which loading data can run code. Every field is a plain value, a
tuple of them, or (``frames``) a tuple of ``FrameGeometry``; JSON turns tuples into lists, so decoding
turns them back, and a decoded record compares equal to the original.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


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
    mosaic_tiles: int | None = None  # Siemens MOSAIC: slices tiled into one image
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

    @property
    def series_key(self) -> str:
        return series_key(self.series_uid)

    @property
    def is_multiframe(self) -> bool:
        return self.number_of_frames > 1


def series_key(series_uid: str) -> str:
    """Pseudonymous, stable key for a series: safe for logs, useless to re-identify a patient."""
    return "s-" + hashlib.sha256(series_uid.encode()).hexdigest()[:12]


def record_to_dict(record: InstanceRecord) -> dict[str, Any]:
    """The record as JSON-ready values: tuples stay tuples here (``json`` writes them as lists)."""
    out: dict[str, Any] = {f.name: getattr(record, f.name) for f in fields(InstanceRecord)}
    out["frames"] = [{f.name: getattr(frame, f.name) for f in fields(FrameGeometry)} for frame in record.frames]
    return out


def record_from_dict(data: Mapping[str, Any]) -> InstanceRecord:
    """Inverse of ``record_to_dict`` (lists back to tuples). Keys the record does not have are ignored."""
    known = {f.name for f in fields(InstanceRecord)}
    values = {k: _tuples(v) for k, v in data.items() if k in known and k != "frames"}
    frame_fields = {f.name for f in fields(FrameGeometry)}
    frames = tuple(FrameGeometry(**{k: _tuples(v) for k, v in frame.items() if k in frame_fields})
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
