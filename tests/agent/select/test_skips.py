"""What is not for quality scoring, judged from headers: localizers, phase images, derived maps."""

from __future__ import annotations

import pytest

from mediqa.agent.config import SKIP_KINDS
from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord
from mediqa.agent.select.skips import is_phase_image, plane_counts, record_skip, split_for_scoring

AXIAL, SAGITTAL, CORONAL = (1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)


def _record(i: int = 0, orientation=AXIAL, **fields: object) -> InstanceRecord:
    base: dict[str, object] = {
        "path": f"f{i}", "size": 1, "mtime_ns": 0, "sop_instance_uid": f"1.{i}", "series_uid": "1.2", "study_uid": "1",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.4", "transfer_syntax": "1.2.840.10008.1.2.1", "modality": "MR",
        "rows": 64, "columns": 64, "instance_number": i + 1,
        "frames": (FrameGeometry((0.0, 0.0, float(i)), orientation),)}
    base.update(fields)
    return InstanceRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "kind"), [
    ({"series_description": "3-Plane Loc"}, "localizer"),  # GE
    ({"series_description": "AAHScout"}, "localizer"),  # Siemens auto-align scout
    ({"series_description": "AAHead_Scout_32ch-head-coil"}, "localizer"),
    ({"series_description": "Survey", "manufacturer": "Philips"}, "localizer"),
    ({"protocol_name": "localizer"}, "localizer"),
    ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")}, "localizer"),
    ({"image_type": ("ORIGINAL", "PRIMARY", "P", "ND")}, "phase"),  # Siemens field-map phase difference
    ({"image_type": ("ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE")}, "phase"),  # Philips
    ({"image_type": ("ORIGINAL", "PRIMARY", "P_FFE", "P", "FFE")}, "phase"),
    ({"series_description": "gre_field_mapping"}, "phase"),
    ({"manufacturer": "GE MEDICAL SYSTEMS", "image_type": ("ORIGINAL", "PRIMARY", "OTHER"),
      "complex_component": "PHASE"}, "phase"),  # GE: only its private image type says phase
    ({"series_description": "fieldmap_run-1"}, "phase"),
    ({"image_type": ("DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND")}, "derived_map"),
    ({"image_type": ("ORIGINAL", "PRIMARY", "ADC")}, "derived_map"),  # typed ORIGINAL all the same
    ({"image_type": ("DERIVED", "PRIMARY", "ASL", "PERFUSION", "SUBTRACTION")}, "derived_map"),  # ASL difference
    ({"image_type": ("DERIVED", "PRIMARY", "ASL", "RELCBF")}, "derived_map"),
    ({"series_description": "Cerebral Blood Flow"}, "derived_map"),  # GE 3D ASL map
    ({"series_description": "ep2d_diff_mddw_20_p2_FA"}, "derived_map"),
    ({"series_description": "ep2d_diff_3scan_trace_p2_ADC", "image_type": ("DERIVED", "PRIMARY", "DIFFUSION")},
     "derived_map"),
    ({"series_description": "QSM", "image_type": ("DERIVED", "PRIMARY", "OTHER")}, "derived_map"),
    ({"series_description": "ep2d_diff_mddw_20_p2_ColFA"}, "derived_map"),
    ({"series_description": "DTI_TENSOR", "image_type": ("DERIVED", "PRIMARY", "DIFFUSION", "TENSOR")},
     "derived_map"),
])
def test_not_for_scoring(fields, kind):
    verdict = record_skip(_record(**fields), SKIP_KINDS)
    assert verdict is not None and verdict.kind == kind, verdict


@pytest.mark.parametrize("fields", [
    {"series_description": "func-bold_task-fa_run-1"},  # a task called "fa" is not an FA map
    {"series_description": "Ax DWI TENSOR R2"},  # GE DTI acquisition: diffusion-weighted images
    {"image_type": ("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "ND")},  # trace images are images
    {"image_type": ("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC")},
    {"image_type": ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")},  # Philips magnitude
    {"image_type": ("ORIGINAL", "PRIMARY", "PERFUSION", "NONE")},  # DSC perfusion source images
    {"series_description": "ep2d_perf", "image_type": ("ORIGINAL", "PRIMARY", "M", "ND")},
    {"series_description": "t1_mprage_sag_p2_iso"},
    {"series_description": "pcasl_3d_source", "image_type": ("ORIGINAL", "PRIMARY", "ASL")},  # ASL source
    # The protocol is shared by an acquisition and its maps; a short map name on an ORIGINAL image is not enough.
    {"series_description": "DWI b1000", "protocol_name": "DWI_ADC",
     "image_type": ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE")},
    {"series_description": "DWI ADC", "image_type": ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE")},
    # GE's ProtocolName is the exam's: it names every series, so it never makes one a localizer or a field map.
    {"series_description": "Ax T2 FSE", "protocol_name": "BRAIN SURVEY + FIELDMAP", "manufacturer": "GE"},
    {"series_description": "ep2d_diff_FA", "image_type": ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE")},
])
def test_images_to_score(fields):
    assert record_skip(_record(**fields), SKIP_KINDS) is None


def test_kinds_are_configurable():
    phase = _record(image_type=("ORIGINAL", "PRIMARY", "P", "ND"))
    assert record_skip(phase, ("localizer",)) is None
    assert is_phase_image(phase)  # the classical scorer still refuses it (tests/agent/test_pipeline_skips.py)
    assert split_for_scoring([phase], ())[0] == [phase]


def test_three_plane_localizer_without_words_is_skipped():
    records = [_record(i, orientation=o) for i, o in enumerate([AXIAL] * 3 + [SAGITTAL] * 3 + [CORONAL] * 3)]
    assert sorted(plane_counts(records)) == [3, 3, 3]
    kept, skip, _ = split_for_scoring(records, SKIP_KINDS)
    assert not kept and skip is not None and skip.kind == "localizer" and "3 slice planes" in skip.reason


def test_planes_are_counted_slice_by_slice_in_order():
    """Each orientation is measured once; the planes and counts are those of measuring every slice in turn:
    a tilted slab joins the first plane within 30 degrees, a degenerate or missing orientation counts nowhere."""
    tilted = (1, 0, 0, 0, 0.94, 0.34)  # 20 degrees from axial
    steep = (1, 0, 0, 0, 0.64, 0.77)  # 50 degrees: a plane of its own
    order = [tilted, AXIAL, SAGITTAL, AXIAL, (1, 0, 0, 1, 0, 0), steep, tilted, None, SAGITTAL, AXIAL]
    records = [_record(i, orientation=o) for i, o in enumerate(order)]
    assert plane_counts(records) == [5, 2, 1]
    interleaved = [_record(i, orientation=o) for i, o in enumerate([AXIAL, SAGITTAL] * 50)]
    assert plane_counts(interleaved) == [50, 50]


def test_one_stray_slice_in_another_plane_is_not_a_localizer():
    records = [_record(i) for i in range(20)] + [_record(20, orientation=SAGITTAL)]
    kept, skip, _ = split_for_scoring(records, SKIP_KINDS)
    assert skip is None and len(kept) == 21


def test_a_mixed_series_scores_the_rest_and_says_so():
    magnitude = [_record(i, image_type=("ORIGINAL", "PRIMARY", "M", "ND")) for i in range(4)]
    phase = [_record(10 + i, image_type=("ORIGINAL", "PRIMARY", "P", "ND")) for i in range(4)]
    kept, skip, notices = split_for_scoring(magnitude + phase, SKIP_KINDS)
    assert skip is None and kept == magnitude
    assert notices == ("4 of 8 images not scored (4 phase)",)


@pytest.mark.shared_data
def test_no_real_shared_series_is_skipped(shared_series):
    """Every real clean series in ../shared is an image to score (none is a localizer, phase or a map)."""
    for name, records in shared_series.items():
        kept, skip, notices = split_for_scoring(records, SKIP_KINDS)
        assert skip is None and len(kept) == len(records) and not notices, (name, skip, notices)
