"""The quality result as a DICOM Comprehensive SR: built from a result dict and the source series' header.

Checked three ways: pydicom reads it back, highdicom re-parses its content tree, and dcmtk's dsrdump
(an independent SR reader) renders it when installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest
from dicom_peers import tool as _tool
from pydicom.uid import ComprehensiveSRStorage

from mediqa.agent.report.sr import build_quality_sr, sr_instance_uid, write_sr
from mediqa.agent.samples import write_phantom_ct

RESULT_UUID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[pydicom.Dataset]:
    dest = tmp_path_factory.mktemp("phantom")
    write_phantom_ct(dest, noise_hu=4.0, seed=0, slices=12, size=128)
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(dest.glob("*.dcm"))]


def _result(series: list[pydicom.Dataset], **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "series_uid": series[0].SeriesInstanceUID, "series_key": "k", "modality": "CT", "series_number": 2,
        "series_description": "Phantom standard dose", "instances": 12, "slices": 12, "score": 1.25,
        "decision": "retake", "reasons": ["image noise 22.0 HU in soft tissue (limit 15.0)"],
        "worst_slice": {"index": 7, "position_mm": 35.0, "score": 0.8, "rank": 8},
        "slice_scores": [1.0, 0.8], "selected_slices": [3, 7], "prompt": {"modality": "CT"},
        "measures": {"noise_hu": 22.0, "snr": 9.5}, "scorer": "classical", "backend": "numpy",
        "threshold": {"retake_below": 2.0}, "processing_ms": 12.3, "warnings": [],
        "uuid": RESULT_UUID, "model_name": "edge-default", "model_version": "1.2.0",
        "model_sha256": "ab" * 32, "agent_version": "0.1.0",
    }
    out.update(over)
    return out


def _uids(series: list[pydicom.Dataset]) -> list[tuple[str, str]]:
    return [(ds.SOPClassUID, ds.SOPInstanceUID) for ds in series]


def _items(ds: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    """Content items (flattened) by concept name meaning."""
    out: dict[str, list[pydicom.Dataset]] = {}

    def walk(items):
        for item in items:
            out.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item)
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


def test_sr_carries_score_decision_reasons_measures_and_worst_slice(tmp_path, series, caplog):
    caplog.set_level(logging.DEBUG)
    worst = series[7].SOPInstanceUID
    sr = build_quality_sr(_result(series), series[0], worst, _uids(series))
    path = write_sr(sr, tmp_path / "out")
    assert oct(path.stat().st_mode & 0o777) == "0o600" and path.suffix == ".dcm"
    assert "PHANTOM" not in path.name and sr.SOPInstanceUID not in path.name
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == ComprehensiveSRStorage and ds.Modality == "SR"
    assert ds.SOPInstanceUID == sr_instance_uid(RESULT_UUID) == f"2.25.{uuid.UUID(RESULT_UUID).int}"
    for key in ("PatientName", "PatientID", "StudyInstanceUID"):
        assert ds[key].value == series[0][key].value  # files with the study in PACS
    assert ds.SeriesInstanceUID != series[0].SeriesInstanceUID and ds.CompletionFlag == "COMPLETE"
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    (ref_series,) = study.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == series[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref_series.ReferencedSOPSequence} == {u for _, u in _uids(series)}

    items = _items(ds)
    (score,) = items["Image quality score"]
    assert float(score.MeasuredValueSequence[0].NumericValue) == 1.25
    (decision,) = items["Retake decision"]
    assert decision.ConceptCodeSequence[0].CodeMeaning == "Retake recommended"
    assert [i.TextValue for i in items["Reason"]] == ["image noise 22.0 HU in soft tissue (limit 15.0)"]
    (measures,) = items["Measures"]
    got = {i.ConceptNameCodeSequence[0].CodeValue: (float(i.MeasuredValueSequence[0].NumericValue),
                                                    i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue)
           for i in measures.ContentSequence}
    assert got == {"noise_hu": (22.0, "[hnsf'U]"), "snr": (9.5, "1")}
    assert items["Image noise"][0].ConceptNameCodeSequence[0].CodingSchemeDesignator == "99MEDIQA"
    (image,) = items["Worst slice"]
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == worst
    assert float(items["Worst slice score"][0].MeasuredValueSequence[0].NumericValue) == 0.8
    assert items["Algorithm Name"][0].TextValue == "edge-default"
    assert items["Algorithm Version"][0].TextValue == "1.2.0"
    assert items["Model SHA-256"][0].TextValue == "ab" * 32
    assert items["Agent version"][0].TextValue == "0.1.0"
    assert "PredecessorDocumentsSequence" not in ds

    parsed = hd.sr.ComprehensiveSR.from_dataset(ds)  # highdicom reads its own tree back
    assert len(parsed.content) == 1
    assert "PHANTOM" not in caplog.text and worst not in caplog.text


def test_dsrdump_reads_it(tmp_path, series):
    dsrdump = _tool("dsrdump")
    sr = build_quality_sr(_result(series), series[0], series[7].SOPInstanceUID, _uids(series))
    path = write_sr(sr, tmp_path)
    r = subprocess.run([dsrdump, str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "Image quality score" in r.stdout and '"1.25"' in r.stdout
    assert "Retake recommended" in r.stdout and "image noise 22.0 HU" in r.stdout
    assert "error" not in r.stderr.lower()


def test_dciodvfy_finds_no_errors(tmp_path, series):
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy not found on PATH (install the Debian package 'dicom3tools')")
    sr = build_quality_sr(_result(series, supersedes=str(uuid.uuid4())), series[0], series[7].SOPInstanceUID,
                          _uids(series))
    r = subprocess.run([dciodvfy, str(write_sr(sr, tmp_path))], capture_output=True, text=True, timeout=30)
    lines = (r.stdout + r.stderr).splitlines()
    assert "ComprehensiveSR" in lines
    assert not [line for line in lines if line.startswith("Error")], lines


def test_superseding_sr_names_the_one_it_replaces(tmp_path, series):
    first = build_quality_sr(_result(series), series[0], series[7].SOPInstanceUID, _uids(series))
    new_uuid = str(uuid.uuid4())
    second = build_quality_sr(_result(series, uuid=new_uuid, supersedes=RESULT_UUID, score=3.1, decision="ok"),
                              series[0], None, _uids(series))
    assert second.SeriesInstanceUID == first.SeriesInstanceUID  # one SR series per scored series
    assert second.SOPInstanceUID == sr_instance_uid(new_uuid) != first.SOPInstanceUID
    (pre_study,) = second.PredecessorDocumentsSequence
    assert pre_study.StudyInstanceUID == first.StudyInstanceUID
    (pre_series,) = pre_study.ReferencedSeriesSequence
    assert pre_series.SeriesInstanceUID == first.SeriesInstanceUID
    (pre,) = pre_series.ReferencedSOPSequence
    assert pre.ReferencedSOPInstanceUID == first.SOPInstanceUID and pre.ReferencedSOPClassUID == ComprehensiveSRStorage
    items = _items(pydicom.dcmread(write_sr(second, tmp_path)))
    assert items["Replaces report"][0].TextValue == first.SOPInstanceUID
    assert items["Retake decision"][0].ConceptCodeSequence[0].CodeMeaning == "No retake needed"
    assert "Worst slice" not in items

    explicit = build_quality_sr(_result(series, uuid=None), series[0], None, _uids(series), replaces="1.2.3.4")
    ref = explicit.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == "1.2.3.4"


def test_unscored_minimal_result_and_rewrite_in_place(tmp_path, series):
    result = _result(series, score=float("nan"), decision="unscored", reasons=[], worst_slice=None,
                     measures={"noise_hu": float("nan")})
    for key in ("uuid", "model_name", "model_version", "model_sha256", "agent_version"):
        result.pop(key)
    sr = build_quality_sr(result, series[0], None, _uids(series))
    items = _items(sr)
    assert "Image quality score" not in items and "Measures" not in items and "Algorithm Name" not in items
    assert items["Retake decision"][0].ConceptCodeSequence[0].CodeMeaning == "Not scored"
    a = write_sr(sr, tmp_path)
    b = write_sr(sr, tmp_path)
    assert a == b and len(list(tmp_path.iterdir())) == 1


def test_bad_inputs_are_refused(series):
    with pytest.raises(ValueError, match="decision"):
        build_quality_sr(_result(series, decision="maybe"), series[0], None, _uids(series))
    with pytest.raises(ValueError, match="worst"):
        build_quality_sr(_result(series), series[0], "1.2.3", _uids(series))
    with pytest.raises(ValueError, match="series"):
        build_quality_sr(_result(series), series[0], None, [])


def test_write_is_atomic_when_the_disk_fails(tmp_path, series, monkeypatch):
    sr = build_quality_sr(_result(series), series[0], None, _uids(series))

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_sr(sr, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_evidence_header_lacking_type2_attributes(series, tmp_path: Path):
    header = series[0].copy()
    for key in ("PatientName", "StudyDate", "AccessionNumber"):
        if key in header:
            del header[key]
    sr = build_quality_sr(_result(series), header, None, _uids(series))
    assert "PatientName" in sr and not sr.PatientName and sr.PatientID == "PHANTOM"
    assert "StudyDate" in sr and not sr.StudyDate
