"""The fast header walk gives the record pydicom's dcmread gives, on every file the project holds.

The walk (``header_scan``) is only a speed-up: ``read_header(scanner=False)`` is pydicom alone and is the
reference. Equal means the same frozen record, or the same skip (reason, detail, retry, series).
"""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from mediqa.agent.dicom.header_scan import NotOrdinary, ScannedDataset, scan_header
from mediqa.agent.dicom.index import read_header
from mediqa.agent.samples import write_phantom_ct
from mediqa.errors import DicomSkip

PYDICOM_FILES = sorted({os.path.dirname(f) for f in get_testdata_files("**/*")})


def outcome(path: str | Path, scanner: bool) -> object:
    try:
        return read_header(path, scanner=scanner)
    except DicomSkip as skip:
        return ("skip", skip.reason, str(skip), skip.retry, skip.series_uid)


def assert_same_everywhere(paths: list[str]) -> None:
    differ = [p for p in paths if outcome(p, True) != outcome(p, False)]
    assert not differ, f"{len(differ)} of {len(paths)} differ, first {differ[:3]}"


def files_under(*roots: str | Path) -> list[str]:
    return [f for r in roots for f in glob.glob(f"{r}/**/*", recursive=True) if os.path.isfile(f)]


def test_same_records_on_every_shared_export(shared_dicom: Path) -> None:
    paths = files_under(shared_dicom)
    assert len(paths) > 700
    assert_same_everywhere(paths)


def test_same_records_on_pydicoms_own_test_files() -> None:
    # Big endian, deflated, no preamble, odd VRs, charsets, DICOMDIRs, truncated and broken files.
    paths = files_under(*PYDICOM_FILES)
    assert len(paths) > 200
    assert_same_everywhere(paths)


def test_the_walk_is_used_for_ordinary_files(tmp_path: Path, shared_dicom: Path) -> None:
    write_phantom_ct(tmp_path, noise_hu=4.0, seed=0, slices=1, size=32)
    ct = next(tmp_path.glob("*.dcm"))
    # a generated CT, a GE CT and a GE DWI (implicit VR, private tags read for the b-value)
    for path in (ct, shared_dicom / "dcm_qa_ct/In/GE/14.dcm",
                 shared_dicom / "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2/i25.MRDC.4"):
        with open(path, "rb") as fh:
            ds, pixel_at = scan_header(fh)
            assert isinstance(ds, ScannedDataset) and fh.tell() == pixel_at
        reference = pydicom.dcmread(path, stop_before_pixels=True)
        assert {e.tag for e in reference} == set(ds.keys())
        for elem in reference:
            assert ds[elem.tag].value == elem.value, elem.tag
            if isinstance(elem.keyword, str) and elem.keyword and elem.VR != "SQ":
                assert ds.get(elem.keyword) == reference.get(elem.keyword), elem.keyword


def _base(syntax: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.3"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelSpacing = [0.5, 0.5]
    ds.ImagePositionPatient = [0, 0, 1.5]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = bytes(32)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _variants() -> dict[str, Dataset]:
    """Hand-made headers for what the shared exports may not hold."""
    out: dict[str, Dataset] = {}
    for syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian):
        out[f"plain-{syntax.name}"] = _base(syntax)
        ds = _base(syntax)
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = "T-A0100", "SRT"
        inner = Dataset()
        inner.CodeMeaning = "nested"
        item.ContentSequence = Sequence([inner])
        ds.AnatomicRegionSequence = Sequence([item, Dataset()])
        ds["AnatomicRegionSequence"].is_undefined_length = True
        for one in ds.AnatomicRegionSequence:
            one.is_undefined_length_sequence_item = True
        out[f"sequences-undefined-{syntax.name}"] = ds
    latin = _base(ExplicitVRLittleEndian)
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.SeriesDescription = "Schädel nativ"
    latin.StudyDescription = "Kopf\\Hals"
    out["latin1"] = latin
    japanese = _base(ExplicitVRLittleEndian)
    japanese.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    japanese.add_new(0x0008103E, "LO", b"\x1b$B;3ED\x1b(B head")
    out["iso2022"] = japanese
    odd = _base(ImplicitVRLittleEndian)
    odd.add_new(0x00181050, "DS", "1.5\\9871")  # SpatialResolution: patched to "1.5\\abcd" (PATCHES)
    odd.add_new(0x00200013, "IS", "9872")  # InstanceNumber: patched to a decimal, "1.0"
    odd.add_new(0x00200012, "IS", "9873")  # AcquisitionNumber: patched to blanks
    odd.add_new(0x00180050, "DS", "")  # SliceThickness empty
    odd.add_new(0x0008103E, "LO", "")
    odd.add_new(0x00180060, "DS", "9874")  # KVP: patched to "nan"
    out["odd-values"] = odd
    bad_slope = _base(ExplicitVRLittleEndian)
    bad_slope.add_new(0x00281053, "DS", "9875")  # patched to "one"
    out["slope-not-a-number"] = bad_slope
    private = _base(ExplicitVRLittleEndian)
    private.Manufacturer = "GE MEDICAL SYSTEMS"
    private.add_new(0x00430010, "LO", "GEMS_PARM_01")
    private.add_new(0x00431039, "IS", ["1000000800", "8", "0", "0"])
    private.add_new(0x0043102F, "SS", 1)
    out["ge-private"] = private
    un = _base(ExplicitVRLittleEndian)
    un.add_new(0x00180088, "UN", b"2.5 ")  # SpacingBetweenSlices stored as UN
    out["un-vr"] = un
    localizer = _base(ImplicitVRLittleEndian)
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    out["localizer"] = localizer
    return out


# Values pydicom will not set are written as placeholders of the same length and patched in the file.
PATCHES = [(b"9871", b"abcd"), (b"9872", b"1.0 "), (b"9873", b"    "), (b"9874", b"nan "), (b"9875", b"one ")]


def _made_variants() -> dict[str, Dataset]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the odd values are the point: pydicom warns when they are set
        return _variants()


@pytest.mark.parametrize("name", sorted(_made_variants()))
def test_same_records_on_hand_made_headers(name: str, tmp_path: Path) -> None:
    ds = _made_variants()[name]
    path = tmp_path / f"{name}.dcm"
    big = ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True, little_endian=not big,
                   implicit_vr=ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian)
    data = path.read_bytes()
    for placeholder, value in PATCHES:
        data = data.replace(placeholder, value)
    path.write_bytes(data)
    assert outcome(path, True) == outcome(path, False)


def test_every_truncation_of_a_header_reads_the_same(tmp_path: Path) -> None:
    write_phantom_ct(tmp_path, noise_hu=4.0, seed=0, slices=1, size=16)
    data = next(tmp_path.glob("*.dcm")).read_bytes()
    cut = tmp_path / "cut.dcm"
    header_end = data.index(b"\xe0\x7f\x10\x00")
    for n in list(range(header_end + 16)) + [len(data) - 1]:
        cut.write_bytes(data[:n])
        assert outcome(cut, True) == outcome(cut, False), n


def test_what_the_walk_leaves_to_pydicom(tmp_path: Path) -> None:
    ds = _base(ExplicitVRBigEndian)
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True, little_endian=False, implicit_vr=False)
    with open(path, "rb") as fh, pytest.raises(NotOrdinary, match="transfer syntax"):
        scan_header(fh)
    path.write_bytes(b"no preamble at all" * 20)
    with open(path, "rb") as fh, pytest.raises(NotOrdinary, match="preamble"):
        scan_header(fh)
