"""Mosaics cut into slices with real positions: Siemens with and without CSA counts, UIH VFRAME.

The ground truth for real Siemens mosaics is the scanner's own protocol: the CSA series header's
ASCCONV lists every slice centre (sSliceArray.asSlice[i].sPosition). A tile's centre is its top-left
voxel plus half a tile along the row and column directions.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mediqa.agent.dicom.index import read_header, scan_tree
from mediqa.agent.dicom.mosaic import read_csa
from mediqa.agent.dicom.volume import plan_series
from mediqa.errors import DicomSkip

SIEMENS = {  # folder: (tiles, spacing between slices)
    "dcm_qa_ts/In": (35, 3.6),
    "dcm_qa/In/Orientation/ax/axasc36": (36, 3.6),
    "dcm_qa_decubitus/In/HFS/4_ep2d_diff_mddw_20_p2": (25, 5.2),
}


def _ascconv_centres(path: Path) -> np.ndarray:
    raw = bytes(pydicom.dcmread(path, stop_before_pixels=True)[0x0029, 0x1020].value)
    text = re.search(rb"### ASCCONV BEGIN.*?### ASCCONV END", raw, re.S).group(0).decode("latin-1")
    found: dict[int, dict[str, float]] = {}
    for m in re.finditer(r"sSliceArray\.asSlice\[(\d+)\]\.sPosition\.d(Sag|Cor|Tra)\s*=\s*([-\d.eE+]+)", text):
        found.setdefault(int(m.group(1)), {})[m.group(2)] = float(m.group(3))
    n = int(re.search(r"sSliceArray\.lSize\s*=\s*(\d+)", text).group(1))
    return np.array([[found[i].get(k, 0.0) for k in ("Sag", "Cor", "Tra")] for i in range(n)])


def _tile_centres(record) -> np.ndarray:
    iop = np.asarray(record.frames[0].orientation)
    row_dir, col_dir = iop[:3], iop[3:]
    side = int(np.ceil(np.sqrt(record.mosaic_tiles)))
    tile_rows, tile_cols = record.rows // side, record.columns // side
    ps = record.pixel_spacing
    half = row_dir * ps[1] * tile_cols / 2 + col_dir * ps[0] * tile_rows / 2
    return np.asarray(record.mosaic_positions) + half


def _first_file(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != "LICENSE")[0]


@pytest.mark.parametrize("folder", sorted(SIEMENS))
def test_siemens_tiles_sit_where_the_scanner_put_its_slices(shared_dicom, folder):
    path = _first_file(shared_dicom / folder)
    record = read_header(path)
    tiles, spacing = SIEMENS[folder]
    assert record.mosaic_tiles == tiles and len(record.mosaic_positions) == tiles
    assert np.abs(_tile_centres(record) - _ascconv_centres(path)).max() < 1e-3  # mm
    layout = plan_series(scan_tree(shared_dicom / folder)[record.series_uid])
    assert layout.n_slices == tiles and layout.slice_spacing == pytest.approx(spacing, abs=1e-4)
    assert not layout.uneven_spacing


def test_csa_header_is_read(shared_dicom):
    ds = pydicom.dcmread(_first_file(shared_dicom / "dcm_qa_ts/In"), stop_before_pixels=True)
    csa = read_csa(bytes(ds[0x0029, 0x1010].value))
    assert csa["NumberOfImagesInMosaic"] == ["35"] and len(csa["SliceNormalVector"]) == 3
    assert read_csa(b"SV10garbage") == {} and read_csa(b"") == {}


def _strip_counts(src: Path, dest: Path, *, keep_acquisition_matrix: bool = True) -> Path:
    """An older Siemens mosaic: ImageType MOSAIC, but no NumberOfImagesInMosaic and no CSA headers."""
    ds = pydicom.dcmread(src)
    del ds[0x0019, 0x100A]
    for tag in [e.tag for e in ds if e.tag.group == 0x0029]:
        del ds[tag]
    if not keep_acquisition_matrix:
        del ds.AcquisitionMatrix
    ds.save_as(dest)
    return dest


def test_siemens_mosaic_without_counts_is_inferred_from_the_acquisition_matrix(shared_dicom, tmp_path):
    src = _first_file(shared_dicom / "dcm_qa_ts/In")
    record = read_header(_strip_counts(src, tmp_path / "old.dcm"))
    assert record.mosaic_tiles == 36  # 384 / 64 = 6 tiles a side; the 36th is blank (35 slices acquired)
    truth = read_header(src)
    along = np.cross(np.asarray(truth.frames[0].orientation[:3]), np.asarray(truth.frames[0].orientation[3:]))
    got = np.asarray(record.mosaic_positions[:35]) @ along
    assert np.abs(got - np.asarray(truth.mosaic_positions) @ along).max() < 1e-3
    layout = plan_series([record])
    assert layout.n_slices == 36 and layout.read_slices([17]).shape == (1, 64, 64)
    # Scored like the same file with its counts: same slices chosen (never the blank tile), same score.
    from mediqa.agent.config import config_from_dict
    from mediqa.agent.pipeline import analyse_series
    from mediqa.agent.scoring.classical import ClassicalScorer

    cfg = config_from_dict({"state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"}})
    old, new = (analyse_series([r], ClassicalScorer(), cfg).result for r in (truth, record))
    assert new.selection.indices == old.selection.indices and new.score == pytest.approx(old.score)


def test_a_mosaic_that_cannot_be_cut_is_a_recorded_skip(shared_dicom, tmp_path):
    src = _first_file(shared_dicom / "dcm_qa_ts/In")
    with pytest.raises(DicomSkip, match="MOSAIC image with no tile count"):
        read_header(_strip_counts(src, tmp_path / "bare.dcm", keep_acquisition_matrix=False))


def _uih_vframe(path: Path, series_uid: str, volume: int, n: int = 27, tile: int = 32) -> Path:
    """A UIH DTI volume stored as one VFRAME image: n tiles, ceil(sqrt(n)) wide, ceil(n / wide) tall."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    pixels = np.zeros((rows * tile, cols * tile), np.uint16)
    yy, xx = np.mgrid[:tile, :tile] - tile / 2
    for k in range(n):  # tile k holds a disc of value 100 + k: which tile was cut is visible in its pixels
        r, c = divmod(k, cols)
        pixels[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = np.where(np.hypot(xx, yy) < 12, 100 + k, 5)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), series_uid
    ds.Modality, ds.Manufacturer, ds.SeriesDescription = "MR", "UIH", "dti_ep_b1000"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "VFRAME"]
    ds.InstanceNumber, ds.SeriesNumber = volume + 1, 5
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [-100.0, -100.0, 40.0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [2.0, 2.0], 3.0, 3.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    block = ds.private_block(0x0065, "Image Private Header", create=True)
    block.add_new(0x50, "DS", str(n))
    frames = []
    for k in range(n):  # slices descend in z: position order is not tile order reversed by accident
        item = Dataset()
        item.ImagePositionPatient = [-32.0, -32.0, 40.0 - 3.0 * k]
        frames.append(item)
    block.add_new(0x51, "SQ", Sequence(frames))
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_uih_vframe_mosaic_is_cut_with_its_own_positions(tmp_path):
    uid = generate_uid()
    paths = [_uih_vframe(tmp_path / f"v{v}.dcm", uid, v) for v in range(3)]  # 3 diffusion directions
    record = read_header(paths[0])
    assert record.mosaic_tiles == 27 and record.mosaic_grid == (5, 6)
    layout = plan_series([read_header(p) for p in paths])
    assert layout.n_slices == 27 and layout.time_points == 3  # not 3 images, not positions from InstanceNumber
    assert layout.slice_spacing == pytest.approx(3.0)
    # In position order (ascending along +z) the first slice is the last tile (z = 40 - 3 * 26).
    assert layout.slices[0].position == pytest.approx(40.0 - 78.0) and layout.slices[0].tile == 26
    first, last = layout.read_slices([0, 26])
    assert first.shape == (32, 32) and first.max() == 100 + 26 and last.max() == 100


@pytest.mark.parametrize("count", [5000, 40_000])
def test_an_impossible_tile_count_is_a_header_limit(shared_dicom, tmp_path, count):
    ds = pydicom.dcmread(_first_file(shared_dicom / "dcm_qa_ts/In"))
    ds[0x0019, 0x100A].value = count
    ds.save_as(tmp_path / "many.dcm")
    with pytest.raises(DicomSkip, match=f"{count} mosaic tiles cannot be cut") as info:
        read_header(tmp_path / "many.dcm")
    assert info.value.reason == "header_limits"
