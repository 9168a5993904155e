"""Vendor private tags the reader needs: the GE b-value (a GE DTI without DiffusionBValue was typed EPI)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from mediqa.agent.dicom.index import read_header


def _ge_dwi(shared_dicom: Path, tmp_path: Path, b_field: list[int] | None, manufacturer: str | None = None) -> Path:
    src = sorted((shared_dicom / "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2").iterdir())[2]
    ds = pydicom.dcmread(src)
    del ds.DiffusionBValue  # older GE releases write the b-value only in their private group
    if b_field is None:
        del ds[0x0043, 0x1039]
    else:
        ds[0x0043, 0x1039].value = b_field
    if manufacturer is not None:
        ds.Manufacturer = manufacturer
    out = tmp_path / "ge.dcm"
    ds.save_as(out)
    return out


@pytest.mark.parametrize(("b_field", "expected"), [
    ([1000, 8, 0, 0], 1000.0),
    ([1_000_001_000, 8, 0, 0], 1000.0),  # the 1e9 flag some releases add
    ([0, 268435456, 0, 0], 0.0),  # GE fMRI (dcm_qa_nih): b = 0
    ([7_000_000, 0, 0, 0], None),  # not physical: no value rather than a wrong one
    (None, None),
])
def test_ge_private_b_value(shared_dicom, tmp_path, b_field, expected):
    assert read_header(_ge_dwi(shared_dicom, tmp_path, b_field)).diffusion_b_value == expected


def test_private_b_value_is_read_only_for_ge(shared_dicom, tmp_path):
    path = _ge_dwi(shared_dicom, tmp_path, [1000, 8, 0, 0], manufacturer="SIEMENS")
    assert read_header(path).diffusion_b_value is None


def test_standard_b_value_wins(shared_dicom):
    src = sorted((shared_dicom / "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2").iterdir())[2]
    assert read_header(src).diffusion_b_value == 1000.0


@pytest.mark.parametrize(("code", "expected"), [(0, "MAGNITUDE"), (1, "PHASE"), (2, "REAL"), (3, "IMAGINARY")])
def test_ge_private_image_type_says_phase(shared_dicom, tmp_path, code, expected):
    """GE types phase images ORIGINAL\\PRIMARY\\OTHER like magnitude ones: 0043,102F tells them apart."""
    src = sorted((shared_dicom / "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2").iterdir())[0]
    ds = pydicom.dcmread(src)
    ds[0x0043, 0x102F].value = code
    ds.save_as(tmp_path / "ge.dcm")
    assert read_header(tmp_path / "ge.dcm").complex_component == expected


def test_enhanced_mr_complex_component_is_read(shared_dicom):
    (t1,) = sorted((shared_dicom / "dcm_qa_xa30/In/5_anat-T1w_acq-tfl").iterdir())[:1]
    assert read_header(t1).complex_component == "MAGNITUDE"
