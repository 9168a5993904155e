"""Uncompressed pixels read at the indexer's offset are exactly pydicom's ``pixel_array`` (dtype, shape, values)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.volume import native_pixels
from mediqa.agent.samples import write_phantom_ct
from mediqa.errors import DicomSkip

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # shipped with pydicom (no download)
SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "dicom"


def _record(path: Path):
    try:
        return read_header(path, skip_derived=False, skip_localizers=False)
    except DicomSkip:
        return None


def _same_as_pydicom(path: Path) -> bool:
    record = _record(path)
    if record is None or record.native_pixels is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own notes (excess padding...): the arrays are compared
        theirs = pydicom.dcmread(path).pixel_array
    ours = native_pixels(record)
    assert ours is not None, path.name
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, path.name
    assert np.array_equal(ours, theirs), path.name
    return True


def test_pydicoms_own_test_files():
    checked = sum(_same_as_pydicom(f) for f in sorted(PYDICOM_FILES.rglob("*.dcm")))
    assert checked >= 5


@pytest.mark.slow
def test_every_uncompressed_shared_file():
    if not SHARED.is_dir():
        pytest.skip(f"the shared DICOM data is not at {SHARED}")
    files = [f for f in sorted(SHARED.rglob("*")) if f.is_file() and f.name not in ("LICENSE", "DICOMDIR")]
    checked = sum(_same_as_pydicom(f) for f in files[::3])  # every third file: all series, ~0.3 s
    assert checked >= 100


def test_generated_phantom(tmp_path):
    write_phantom_ct(tmp_path, noise_hu=8.0, seed=3, slices=3, size=64)
    assert all(_same_as_pydicom(f) for f in sorted(tmp_path.iterdir()))


@pytest.mark.parametrize("signed", [0, 1])
def test_unused_high_bits_are_corrected_as_pydicom_does(tmp_path, signed):
    write_phantom_ct(tmp_path, noise_hu=8.0, seed=3, slices=1, size=32)
    path = next(tmp_path.iterdir())
    ds = pydicom.dcmread(path)
    raw = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 37  # high bits set: junk above BitsStored 12
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, signed
    ds.PixelData = raw.astype("<u2").tobytes()
    ds.save_as(path)
    assert _same_as_pydicom(path)


def test_compressed_and_big_endian_files_are_left_to_pydicom(tmp_path):
    write_phantom_ct(tmp_path, noise_hu=8.0, seed=3, slices=1, size=32)
    path = next(tmp_path.iterdir())
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(tmp_path / "rle.dcm")
    record = _record(tmp_path / "rle.dcm")
    assert record is not None and record.native_pixels is None
    record = _record(PYDICOM_FILES / "MR_small_bigendian.dcm")
    assert record is not None and record.native_pixels is None
