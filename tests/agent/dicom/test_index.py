"""Header indexing on real exports and on bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mediqa.agent.dicom.index import read_header, scan_tree
from mediqa.errors import DicomSkip


def _by_folder(series):
    out = {}
    for recs in series.values():
        folder = str(Path(recs[0].path).parent)
        out[folder] = recs
    return out


@pytest.mark.slow
def test_groups_real_ct_series_and_skips_non_images(shared_dicom):
    skipped: dict[str, str] = {}
    series = scan_tree(shared_dicom / "dcm_qa_ct", skipped=skipped)
    counts = sorted(len(r) for r in series.values())
    assert counts == [28, 28, 140]  # GE head, Philips 5 mm, Philips 1 mm
    reasons = set(skipped.values())
    assert {"localizer", "not_ct_mr_image", "dicomdir"} <= reasons
    assert all(r.modality == "CT" for recs in series.values() for r in recs)


@pytest.mark.slow
def test_extensionless_nested_and_enhanced_multiframe(shared_dicom):
    series = scan_tree(shared_dicom / "dcm_qa_xa30")
    frames = sorted((len(r), r[0].number_of_frames) for r in series.values())
    assert frames == [(1, 96), (20, 33)]
    t1 = next(r for r in series.values() if len(r) == 1)[0]
    assert len(t1.frames) == 96 and all(f.position for f in t1.frames)
    # Enhanced objects keep these in the functional groups; the record still has them.
    assert t1.phase_encode_direction == "ROW"
    assert t1.repetition_time and t1.repetition_time > 1000 and t1.inversion_time


def test_compressed_transfer_syntax_indexes(shared_dicom):
    series = scan_tree(shared_dicom / "dcm_qa_frag")
    (recs,) = series.values()
    assert len(recs) == 96
    assert recs[0].transfer_syntax.startswith("1.2.840.10008.1.2.4")  # JPEG family


def test_derived_can_be_kept(shared_dicom):
    path = shared_dicom / "dcm_qa_ct/In/Philips/S21570/S1000/I10"
    with pytest.raises(DicomSkip) as exc:
        read_header(path)
    assert exc.value.reason == "localizer"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty_file"), (b"hello, not a dicom file" * 10, "not_dicom")],
)
def test_bad_files_are_skipped_with_reason(tmp_path, content, reason):
    p = tmp_path / "x"
    p.write_bytes(content)
    with pytest.raises(DicomSkip) as exc:
        read_header(p)
    assert exc.value.reason == reason


def test_truncated_file_is_retryable(tmp_path, shared_dicom):
    src = shared_dicom / "dcm_qa_ct/In/GE/01.dcm"
    p = tmp_path / "half.dcm"
    data = src.read_bytes()
    for cut in (300, 3000, len(data) // 2, len(data) - 2):  # inside the header, inside the pixels
        p.write_bytes(data[:cut])
        with pytest.raises(DicomSkip) as exc:
            read_header(p)
        assert exc.value.reason in ("unreadable", "incomplete"), cut
        assert getattr(exc.value, "retry", False)
    p.write_bytes(data)
    assert read_header(p).rows == 512


def test_truncated_compressed_file_is_retryable(tmp_path, shared_dicom):
    data = (shared_dicom / "dcm_qa_frag/In/5001_anat-T1w_acq-tfl/5001001.dcm").read_bytes()
    p = tmp_path / "half.dcm"
    p.write_bytes(data[:-4])  # encapsulated pixel data without its final delimiter
    with pytest.raises(DicomSkip) as exc:
        read_header(p)
    assert exc.value.reason == "incomplete"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(tmp_path, shared_dicom):
    p = tmp_path / "locked.dcm"
    shutil.copy(shared_dicom / "dcm_qa_ct/In/GE/01.dcm", p)
    p.chmod(0)
    with pytest.raises(DicomSkip) as exc:
        read_header(p)
    assert exc.value.reason == "permission_denied"


@pytest.mark.parametrize("image_type,reason", [(["ORIGINAL", "PRIMARY", "LOCALIZER"], "localizer"),
                                                (["DERIVED", "SECONDARY", "MPR"], "derived")])
def test_policy_skips_name_their_series(tmp_path, image_type, reason):
    """A skipped localizer/derived file names its series, so the series is reported once as skipped."""
    import pydicom

    from mediqa.agent.samples import write_phantom_ct

    write_phantom_ct(tmp_path / "s", noise_hu=4.0, seed=0, slices=1, size=32)
    path = next((tmp_path / "s").iterdir())
    ds = pydicom.dcmread(path)
    ds.ImageType = image_type
    ds.save_as(path)
    with pytest.raises(DicomSkip) as exc:
        read_header(path)
    assert exc.value.reason == reason and exc.value.series_uid == str(ds.SeriesInstanceUID)
