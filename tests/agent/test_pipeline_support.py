"""Helpers for the pipeline tests (``test_pipeline_*.py``): small generated CT/MR series; no tests here.

Each writer takes the pixels in physical units (HU for CT) and the header words that matter, and
writes a classic single-frame series with real geometry, so the whole chain (index, plan, select,
read, content check, scorers) runs on it as on a scanner's export.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_series(dest: Path, stack: np.ndarray, modality: str, *, description: str = "",
                 image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
                 orientations: Sequence[Sequence[float]] | None = None, spacing_mm: float = 5.0,
                 extra: dict[str, object] | None = None) -> list[Path]:
    """Write ``stack`` [N, H, W] (HU for CT; magnitude for MR) as N files; returns their paths.

    ``orientations`` gives each slice its own ImageOrientationPatient (a 3-plane localizer); by
    default every slice is axial, ``spacing_mm`` apart.
    """
    dest.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k, image in enumerate(np.asarray(stack, dtype=np.float64)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(CT_STORAGE if modality == "CT" else MR_STORAGE)
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = dest / f"{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.Manufacturer = modality, "MedIQA test"
        ds.SeriesNumber, ds.InstanceNumber = 7, k + 1
        ds.SeriesDescription = description
        ds.ImageType = list(image_type)
        ds.PatientName, ds.PatientID = "TEST", "TEST"
        ds.ImageOrientationPatient = list(orientations[k]) if orientations else [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-60.0, -60.0, spacing_mm * k]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], spacing_mm
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if modality == "CT":
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            stored = np.clip(np.round(image + 1024.0), 0, 65535)
        else:
            stored = np.clip(np.round(image), 0, 65535)
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.PixelData = stored.astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def head_phantom(n: int, size: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth CT head-like phantom (brain, skull ring, air around) with mild noise, HU."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2.0
    r = np.hypot(xx, yy)
    base = np.where(r < size * 0.4, 35.0, -1000.0)
    base[(r > size * 0.36) & (r < size * 0.4)] = 900.0
    return base[None] + rng.normal(0.0, 4.0, (n, size, size)) * (base > -1000)


def rician_noise(n: int, size: int = 64, sigma: float = 20.0, seed: int = 0) -> np.ndarray:
    """Magnitude of complex Gaussian noise: what an EPI with no subject in the coil shows."""
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(0.0, sigma, (n, size, size)) + 1j * rng.normal(0.0, sigma, (n, size, size)))
