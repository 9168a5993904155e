"""Sample series for the demo: real shared series when present, else generated phantoms.

The noisy copy of a series (a new SeriesInstanceUID, "simulated noise" in its description) is the
demo's retake: extra image noise is added to the stored values, nothing else changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

log = logging.getLogger(__name__)

SHARED_SERIES = (
    "dcm_qa_ct/In/Philips/S21570/S2010",  # head phantom CT, 5 mm
    "dcm_qa_ct/In/GE",  # head CT with gantry tilt
    "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag",  # 2D T1 sagittal
)
# The noisy copy is made of the human head CT: the phantom is almost all air and bone on the brain
# window (under 1% of its pixels lie in 0..80 HU), so added noise barely shows where a reader looks.
NOISY_COPY_OF = "dcm_qa_ct/In/GE"


def shared_data_root() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "dicom"
        if (parent / "pyproject.toml").exists() and candidate.is_dir():
            return candidate
    return None


def prepare_samples(staging: Path) -> list[Path]:
    """Folders to replay: a few real series and a noisy copy of the head CT, or phantoms."""
    root = shared_data_root()
    if root is not None:
        sources = [root / rel for rel in SHARED_SERIES if (root / rel).is_dir()]
        if sources:
            noisy = staging / "noisy"
            base = root / NOISY_COPY_OF if (root / NOISY_COPY_OF).is_dir() else sources[0]
            add_noise_copy(base, noisy, sigma=30.0, seed=1)  # far noisier than any diagnostic head CT
            return [*sources, noisy]
    log.info("shared data not found: using generated phantom series")
    clean, noisy = staging / "phantom_clean", staging / "phantom_noisy"
    write_phantom_ct(clean, noise_hu=4.0, seed=0)
    write_phantom_ct(noisy, noise_hu=45.0, seed=1)
    return [clean, noisy]


def add_noise_copy(src: Path, dest: Path, sigma: float, seed: int) -> None:
    """Copy a series with Gaussian noise (sigma in HU / stored units x slope) under a new series UID."""
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for i, path in enumerate(sorted(p for p in src.iterdir() if p.is_file())):
        try:
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array.astype(np.float64)
        except (pydicom.errors.InvalidDicomError, AttributeError, ValueError, TypeError):
            continue  # DIRFILEs and other non-images are not copied
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        noisy = arr + rng.normal(0, sigma / slope, arr.shape)
        info = np.iinfo(ds.pixel_array.dtype)
        ds.PixelData = np.clip(np.round(noisy), info.min, info.max).astype(ds.pixel_array.dtype).tobytes()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = f"{getattr(ds, 'SeriesDescription', '')} (simulated noise)".strip()
        ds.save_as(dest / f"{i:04d}.dcm")


def write_phantom_ct(dest: Path, noise_hu: float, seed: int, slices: int = 24, size: int = 256) -> None:
    """A water cylinder with a few inserts, 5 mm slices: a CT series with known noise."""
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size] - size / 2
    r = np.hypot(xx, yy)
    base = np.where(r < size * 0.42, 0.0, -1000.0)
    for cx, cy, hu in ((-40, 0, 60.0), (40, 0, -100.0), (0, 45, 300.0)):
        base[np.hypot(xx - cx, yy - cy) < 14] = hu
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    for k in range(slices):
        img = base + rng.normal(0, noise_hu, base.shape) * (base > -1000)
        stored = np.clip(np.round(img + 1024), 0, 4095).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(dest / f"{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "MedIQA phantom", "HEAD"
        ds.SeriesNumber, ds.InstanceNumber = 2 if noise_hu < 10 else 3, k + 1
        ds.SeriesDescription = f"Phantom {'standard' if noise_hu < 10 else 'low'} dose"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName, ds.PatientID = "PHANTOM", "PHANTOM"
        ds.ImagePositionPatient = [-size * 0.35, -size * 0.35, 5.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 5.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.ConvolutionKernel = "STANDARD"
        ds.PixelData = stored.tobytes()
        ds.save_as(dest / f"{k:04d}.dcm", enforce_file_format=True)
