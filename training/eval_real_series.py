"""The real series of the real-series evaluation, and the controls, as the agent reads them (DICOM).

Every real series the project can use: the shared dcm2niix QA exports (``../shared/data/dicom``), the CT and
MR slices of pydicom and pydicom-data (never the ``693_*`` CQ500 files), and the TotalSegmentator NIfTI
volumes (``../shared/data/nifti``), which are written as DICOM series so that they go through the agent's
own reader, prompt rules, slice selection and content check like any export. A resampled volume is
scored twice: as stored (smooth: 1.5 or 3 mm voxels averaged the noise away) and at "full dose" (a routine
scan's noise simulated in the projection domain, ``degrade/ct_native``). Controls with no patient in
them: empty and noise-only CT and MR series. Written files carry no patient name or ID.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediqa.agent.dicom.index import read_header, scan_tree
from mediqa.agent.dicom.records import InstanceRecord, series_key

log = logging.getLogger(__name__)

# pydicom / pydicom-data images of patients (>= 64 px); the 693_* CQ500 files are non-commercial: never.
PYDICOM_FILES = ("CT_small.dcm", "explicit_VR-UN.dcm", "bad_sequence.dcm", "J2K_pixelrep_mismatch.dcm",
                 "MR_small.dcm", "MR2_UNCI.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm")
NIFTI_CT = (("abdomen_ct_3mm.nii.gz", "ABDOMEN"), ("chest_ct_aorta_crop_1.5mm.nii.gz", "CHEST"),
            ("chest_ct_heart_crop_1.5mm.nii.gz", "CHEST"))
NIFTI_MR = (("mr_small_3mm.nii.gz", "ABDOMEN"),)
# Shared exports of phantoms, not patients (../shared/data/README.md).
PHANTOM_FOLDERS = ("dcm_qa_ct/In/Philips", "dcm_qa_frag", "dcm_qa_agfa", "dcm_qa_ge")
WRITTEN_SLICES = 9  # slices of a NIfTI volume written as a series (evenly over its middle 70 %)


@dataclass(frozen=True)
class RealSeries:
    name: str
    origin: str  # shared | pydicom-data | nifti | control
    subject: str  # human | phantom | none (a control)
    records: tuple[InstanceRecord, ...]
    train_key: str = ""  # the series key training knew it by, where the written DICOM has a new one

    @property
    def modality(self) -> str:
        return self.records[0].modality

    @property
    def vendor(self) -> str:
        from mediqa.training.datagen.sources import normalise_vendor

        return normalise_vendor(self.records[0].manufacturer)


def shared_series(dicom_root: Path) -> list[RealSeries]:
    out: list[RealSeries] = []
    for records in scan_tree(dicom_root).values():
        folder = str(Path(records[0].path).parent.relative_to(dicom_root))
        subject = "phantom" if folder.startswith(PHANTOM_FOLDERS) else "human"
        out.append(RealSeries(folder, "shared", subject, tuple(records)))
    return sorted(out, key=lambda s: s.name)


def pydicom_series() -> list[RealSeries]:
    from pydicom.data import get_testdata_file

    out: list[RealSeries] = []
    for name in PYDICOM_FILES:
        path = get_testdata_file(name)
        if path is None:
            log.warning("pydicom test file %s not found (pip install pydicom-data): left out", name)
            continue
        out.append(RealSeries(f"pydicom-data/{name}", "pydicom-data", "human",
                              (read_header(str(path), skip_derived=False),)))
    return out


def nifti_series(nifti_root: Path, out_dir: Path, views: int = 360) -> list[RealSeries]:
    """The TotalSegmentator volumes as DICOM: CT as stored and at full dose, the MR as stored."""
    from mediqa.training.datagen.config import SourceSpec
    from mediqa.training.datagen.sources_body import load_nifti_ct
    from mediqa.training.degrade.ct_native import native_scan

    out: list[RealSeries] = []
    for name, part in NIFTI_CT:
        if not (nifti_root / name).is_file():
            log.warning("%s not found under %s: left out", name, nifti_root)
            continue
        folders = {tag: out_dir / f"{name.split('.')[0]}-{tag.replace(' ', '_')}" for tag in ("as stored", "full dose")}
        if not all(_written(f) for f in folders.values()):
            spec = SourceSpec(name=name, kind="nifti_ct", path=name)
            vol, spacing, step, _ = load_nifti_ct(spec, nifti_root / "_")  # paths resolve against its parent
            picks = np.linspace(0.15 * (len(vol) - 1), 0.85 * (len(vol) - 1), WRITTEN_SLICES).round().astype(int)
            stored = vol[picks]
            rng = np.random.default_rng(20251201)
            full = np.stack([native_scan(s.astype(np.float64), spacing[0], part.lower(), views, rng).image
                             for s in stored])
            for tag, data in (("as stored", stored), ("full dose", full)):
                write_series(folders[tag], data, "CT", spacing, step, f"{part} {tag}", part)
        for tag, folder in folders.items():
            out.append(RealSeries(f"nifti/{name} ({tag})", "nifti", "human", _records(folder),
                                  series_key(f"nifti:{name}")))
    for name, part in NIFTI_MR:
        if (nifti_root / name).is_file():
            vol, spacing, step = _mr_nifti(nifti_root / name)
            folder = out_dir / Path(name).name.split(".")[0]
            if not _written(folder):
                write_series(folder, vol, "MR", spacing, step, f"{part} T1", part)
            out.append(RealSeries(f"nifti/{name}", "nifti", "human", _records(folder)))
    return out


def _mr_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float], float]:
    import nibabel as nib

    from mediqa.training.datagen.sources_body import axial_slices_ras

    img = nib.as_closest_canonical(nib.load(str(path)))
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    vol = axial_slices_ras(np.asarray(img.dataobj, dtype=np.float32))
    return np.maximum(vol, 0.0), (zooms[1], zooms[0]), zooms[2]


def controls(out_dir: Path, seed: int = 7) -> list[RealSeries]:
    """Series with no patient: empty and noise-only, CT and MR (7 slices of 256 px each)."""
    rng = np.random.default_rng(seed)
    shape = (7, 256, 256)
    made = {
        "CT empty (air, -1000 HU)": ("CT", np.full(shape, -1000.0)),
        "CT noise in the air range (-1000 +- 20 HU)": ("CT", rng.normal(-1000.0, 20.0, shape)),
        "CT pure noise (0 +- 200 HU)": ("CT", rng.normal(0.0, 200.0, shape)),
        "MR empty (zeros)": ("MR", np.zeros(shape)),
        "MR noise only (Rayleigh, EPI-like)": ("MR", np.hypot(rng.normal(0, 30.0, shape), rng.normal(0, 30.0, shape))),
    }
    out: list[RealSeries] = []
    for i, (name, (modality, data)) in enumerate(made.items()):
        folder = out_dir / f"control-{i}"
        if not _written(folder):
            write_series(folder, data, modality, (1.0, 1.0), 3.0, name, "")
        out.append(RealSeries(name, "control", "none", _records(folder)))
    return out


def _written(folder: Path) -> bool:
    """A series folder left by an earlier run (``eval_real --work``): read it again rather than rewrite it."""
    return folder.is_dir() and any(folder.glob("IM*.dcm"))


def _records(folder: Path) -> tuple[InstanceRecord, ...]:
    (records,) = scan_tree(folder).values()
    return tuple(records)


def write_series(folder: Path, volume: np.ndarray, modality: str, spacing: tuple[float, float], step: float,
                 description: str, body_part: str) -> None:
    """Write ``volume`` [Z, H, W] (HU for CT) as an uncompressed axial DICOM series with fresh UIDs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    sop_class = UID("1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4")
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    intercept = -1024.0 if modality == "CT" else 0.0
    for z, plane in enumerate(np.asarray(volume, dtype=np.float64)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.Manufacturer, ds.SeriesDescription = modality, "MedIQA evaluation", description
        ds.PatientName, ds.PatientID = "", ""  # never a name or ID
        ds.SeriesNumber, ds.InstanceNumber = 1, z + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if modality == "CT" else ["ORIGINAL", "PRIMARY", "M"]
        if body_part:
            ds.BodyPartExamined = body_part
        if modality == "CT":
            ds.ConvolutionKernel, ds.KVP = "STANDARD", 120
            ds.RescaleIntercept, ds.RescaleSlope = intercept, 1.0
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR", "SP", "2D"
            ds.RepetitionTime, ds.EchoTime = 500.0, 10.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(z * step)]
        ds.SliceThickness, ds.PixelSpacing = float(step), [float(spacing[0]), float(spacing[1])]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        stored = np.clip(np.round(plane - intercept), -32768, 32767).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"IM{z + 1:04d}.dcm", enforce_file_format=True)
