"""Real source series: shared DICOM exports (read with the agent's reader), pydicom-data slices, MNI152.

The agent's own reader (``scan_tree`` + ``plan_series``) orders slices along the normal and applies
rescale slope/intercept, so training sees exactly the pixels the agent will see on a console. Each source
yields the slices the config asks for, their neighbours (for thick-slab blur) and the facts every sample
records: vendor, pseudonymous series key, group, spacing and phase-encode direction.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediqa.agent.dicom.index import read_header, scan_tree
from mediqa.agent.dicom.records import series_key
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.errors import ConfigError
from mediqa.training.datagen.config import SourceSpec

log = logging.getLogger(__name__)

_VENDORS = {"GE": "GE", "SIEMENS": "Siemens", "PHILIPS": "Philips", "TOSHIBA": "Toshiba", "CANON": "Canon"}


@dataclass(frozen=True)
class SourceSeries:
    """A loaded source: the whole ordered stack (float32 [Z, H, W], physical units) and its facts."""

    spec: SourceSpec
    modality: str
    vendor: str
    series_key: str
    volume: np.ndarray
    spacing_mm: tuple[float, float]
    slice_step_mm: float | None
    pe_direction: str  # ROW / COL / "" (unknown)
    source_path: str  # relative to data_root, or the package file name
    window: tuple[float, float] | None = None  # (centre, width) from the header, CT display window
    clean_anatomy: bool = False  # noise-free CT: tasks_ct simulates a routine scan's noise first

    @property
    def dimension(self) -> str:
        # In the prompt vocabulary 2D means projection imaging (radiographs); CT and MR are cross-sectional
        # even as one slice, and the agent sends 3D for them (agent/select/prompts.py), so training does too.
        return "3D"

    def chosen_slices(self) -> list[int]:
        """``spec.slices`` indices evenly spaced over ``spec.slice_range`` of the stack (unique, sorted)."""
        n = self.volume.shape[0]
        lo, hi = (tuple(self.spec.slice_range) + (0.0, 1.0))[:2]
        first, last = int(round(lo * (n - 1))), int(round(hi * (n - 1)))
        picks = np.linspace(first, last, num=min(self.spec.slices, last - first + 1))
        return sorted({int(round(p)) for p in picks})


def normalise_vendor(manufacturer: str) -> str:
    upper = manufacturer.upper()
    for key, name in _VENDORS.items():
        if key in upper:
            return name
    return manufacturer.strip() or "unknown"


def load_source(spec: SourceSpec, data_root: Path) -> SourceSeries:
    """Load one source; raises ``ConfigError`` naming the source when it cannot."""
    return _load_cached(spec, str(data_root))


@functools.lru_cache(maxsize=4)
def _load_cached(spec: SourceSpec, data_root: str) -> SourceSeries:
    if spec.kind == "dicom":
        return _from_dicom(spec, Path(data_root))
    if spec.kind == "pydicom":
        return _from_pydicom(spec)
    if spec.kind == "mni152_ct":
        return _from_pseudo_ct(spec)
    if spec.kind == "nifti_ct":
        return _from_nifti_ct(spec, Path(data_root))
    if spec.kind == "body_phantom":
        return _from_body_phantom(spec)
    return _from_mni152(spec)


def source_available(spec: SourceSpec, data_root: Path) -> bool:
    if spec.kind == "dicom":
        return (data_root / spec.path).is_dir()
    if spec.kind == "nifti_ct":
        from mediqa.training.datagen.sources_body import nifti_path

        return nifti_path(spec, data_root).is_file()
    return True


def _from_dicom(spec: SourceSpec, data_root: Path) -> SourceSeries:
    folder = data_root / spec.path
    if not folder.is_dir():
        raise ConfigError(f"source '{spec.name}': {folder} not found",
                          "put the shared data next to the repository or set data_root")
    found = scan_tree(folder)
    if len(found) != 1:
        raise ConfigError(f"source '{spec.name}': {folder} holds {len(found)} image series, expected 1",
                          "point path at the folder of one series")
    layout = plan_series(next(iter(found.values())))
    return _from_layout(spec, layout, spec.path)


def _from_layout(spec: SourceSpec, layout: SeriesLayout, source_path: str) -> SourceSeries:
    first = layout.first
    spacing = layout.pixel_spacing or (1.0, 1.0)
    return SourceSeries(
        spec=spec, modality=spec.modality or layout.modality, vendor=spec.vendor or normalise_vendor(
            first.manufacturer), series_key=layout.series_key, volume=layout.read_all(),
        spacing_mm=(float(spacing[0]), float(spacing[1])), slice_step_mm=layout.slice_spacing,
        pe_direction=first.phase_encode_direction, source_path=source_path,
        window=(float(first.window[0]), float(first.window[1])) if first.window else None)


def _from_pydicom(spec: SourceSpec) -> SourceSeries:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(spec.path)
    if path is None:
        raise ConfigError(f"source '{spec.name}': pydicom test file {spec.path} not found",
                          "pip install pydicom-data")
    layout = plan_series([read_header(path, skip_derived=False)])
    return _from_layout(spec, layout, f"pydicom-data/{Path(str(path)).name}")


def _from_mni152(spec: SourceSpec) -> SourceSeries:
    """nilearn's MNI152 T1 template (1 mm, RAS): axial slices, anterior up, as a viewer shows them."""
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    data = np.asarray(img.get_fdata(), dtype=np.float32)  # [x, y, z]
    volume = np.ascontiguousarray(np.rot90(data, k=1, axes=(0, 1)).transpose(2, 0, 1))  # [z, y(A->P), x]
    zooms = img.header.get_zooms()
    return SourceSeries(spec=spec, modality=spec.modality or "MR", vendor=spec.vendor or "MNI152 template",
                        series_key=series_key("nilearn:mni152_t1_1mm"), volume=volume,
                        spacing_mm=(float(zooms[1]), float(zooms[0])), slice_step_mm=float(zooms[2]),
                        pe_direction="", source_path="nilearn/MNI152_T1_1mm")


def _from_pseudo_ct(spec: SourceSpec) -> SourceSeries:
    """A simulated head CT from the MNI152 tissue maps (see ``pseudo_ct``)."""
    from mediqa.training.datagen.pseudo_ct import WINDOW, pseudo_ct_volume

    volume, spacing, step = pseudo_ct_volume()
    return SourceSeries(spec=spec, modality="CT", vendor=spec.vendor or "MNI152 pseudo-CT",
                        series_key=series_key("nilearn:mni152_pseudo_ct_0.5mm"), volume=volume,
                        spacing_mm=spacing, slice_step_mm=step, pe_direction="",
                        source_path="nilearn/MNI152 tissue maps (pseudo-CT)", window=WINDOW)


def _from_nifti_ct(spec: SourceSpec, data_root: Path) -> SourceSeries:
    """A resampled CT volume (TotalSegmentator test data): clean anatomy, see ``sources_body``."""
    from mediqa.training.datagen.sources_body import load_nifti_ct

    volume, spacing, step, key = load_nifti_ct(spec, data_root)
    return SourceSeries(spec=spec, modality="CT", vendor=spec.vendor or "unknown", series_key=series_key(key),
                        volume=volume, spacing_mm=spacing, slice_step_mm=step, pe_direction="",
                        source_path=spec.path, clean_anatomy=True)


def _from_body_phantom(spec: SourceSpec) -> SourceSeries:
    """``spec.slices`` independent random patients of the procedural body phantom (``body_phantom``)."""
    from mediqa.training.datagen.body_phantom import SPACING_MM, phantom_volume
    from mediqa.training.datagen.sources_body import phantom_key

    seed = int.from_bytes(hashlib.sha256(spec.name.encode()).digest()[:8], "little")  # stable per source
    volume = phantom_volume(spec.path, spec.slices, seed, spec.contrast)
    # No slice step: neighbouring slices are different patients, so no thick-slab average applies.
    return SourceSeries(spec=spec, modality="CT", vendor=spec.vendor or "body phantom",
                        series_key=phantom_key(spec, seed), volume=volume, spacing_mm=(SPACING_MM, SPACING_MM),
                        slice_step_mm=None, pe_direction="", source_path=f"procedural body phantom ({spec.path})",
                        clean_anatomy=True)
