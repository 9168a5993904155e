"""Immutable header records: what the agent knows about one DICOM file without decoding pixels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


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
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def series_key(self) -> str:
        return series_key(self.series_uid)

    @property
    def is_multiframe(self) -> bool:
        return self.number_of_frames > 1


def series_key(series_uid: str) -> str:
    """Pseudonymous, stable key for a series: safe for logs, useless to re-identify a patient."""
    return "s-" + hashlib.sha256(series_uid.encode()).hexdigest()[:12]
