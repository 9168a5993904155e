"""Instance records survive the state database as JSON: every field, tuples as tuples, equal records."""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, fields

from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import (
    FrameGeometry,
    InstanceRecord,
    record_from_dict,
    record_from_json,
    record_to_json,
)
from mediqa.agent.samples import write_phantom_ct


def _full_record() -> InstanceRecord:
    """Every field set to a value other than its default (checked below, so a new field is not missed)."""
    frames = (
        FrameGeometry((1.5, -2.0, 3.25), (1.0, 0.0, 0.0, 0.0, 0.98, -0.17), 2.0, -1024.0, 0),
        FrameGeometry((1.5, -2.0, 8.25), (1.0, 0.0, 0.0, 0.0, 0.98, -0.17), 2.0, -1024.0, 3),
    )
    return InstanceRecord(
        path="/export/Séries 2/IM0001", size=123456, mtime_ns=1_700_000_000_123_456_789,
        sop_instance_uid="1.2.3.4.5", series_uid="1.2.3.4", study_uid="1.2.3",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", transfer_syntax="1.2.840.10008.1.2.4.90", modality="MR",
        manufacturer="Siemens", model_name="Prisma",
        image_type=("ORIGINAL", "PRIMARY", "M", "MOSAIC"), series_number=7, series_description="ep2d_diff",
        protocol_name="DWI", body_part="BRAIN", study_description="Head", instance_number=12, acquisition_number=1,
        rows=384, columns=384, number_of_frames=2, pixel_spacing=(1.1, 1.2), slice_thickness=4.5, frames=frames,
        images_in_acquisition=30, number_of_temporal_positions=3, mosaic_tiles=36, mosaic_grid=(6, 7),
        mosaic_positions=((-1.0, 2.0, 3.5), (-1.0, 2.0, 7.1)), complex_component="MAGNITUDE", mr_acquisition_type="2D",
        scanning_sequence=("EP",), sequence_variant=("SK", "SP"), sequence_name="*ep_b1000t", echo_time=89.0,
        repetition_time=5200.0, inversion_time=2100.0, diffusion_b_value=1000.0, convolution_kernel=("FC43", "B"),
        contrast_agent="Gd", phase_encode_direction="COL", field_strength=3.0, kvp=120.0, exposure_mas=250.0,
        window=(40.0, 400.0), native_pixels=(1420, 16, 12, 1),
    )


def test_every_field_round_trips_and_tuples_stay_tuples():
    rec = _full_record()
    for f in fields(InstanceRecord):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        assert getattr(rec, f.name) != default, f"{f.name} is left at its default: set it in _full_record"
    text = record_to_json(rec)
    back = record_from_json(text)
    assert back == rec and hash(back) == hash(rec)
    for f in fields(InstanceRecord):
        value = getattr(back, f.name)
        assert type(value) is type(getattr(rec, f.name)), f.name
    assert all(type(fr.position) is tuple and type(fr.orientation) is tuple for fr in back.frames)
    assert json.loads(text)["frames"][1]["temporal_index"] == 3  # plain JSON, readable with sqlite3 alone


def test_record_fields_are_json_values_or_tuples_of_them():
    """The codec assumes this: a field of any other type (a dict, a set...) needs its own encoding."""
    hints = typing.get_type_hints(InstanceRecord)
    for name, hint in hints.items():
        text = str(hint)
        assert "dict" not in text and "set" not in text and "list" not in text, name


def test_defaults_round_trip_and_unknown_keys_are_ignored():
    rec = InstanceRecord(path="p", size=1, mtime_ns=2, sop_instance_uid="s", series_uid="u", study_uid="",
                         sop_class_uid="c", transfer_syntax="t", modality="CT")
    assert record_from_json(record_to_json(rec)) == rec
    data = json.loads(record_to_json(rec))
    data["extra"] = {"from": "an older agent"}
    assert record_from_dict(data) == rec


def test_real_headers_round_trip(tmp_path):
    write_phantom_ct(tmp_path / "ct", noise_hu=5.0, seed=3, slices=3, size=32)
    records = [read_header(p) for p in sorted((tmp_path / "ct").iterdir())]
    assert records and all(r.frames and r.frames[0].position for r in records)
    for rec in records:
        assert record_from_json(record_to_json(rec)) == rec
