"""Body CT sources of clean anatomy: the procedural body phantom and resampled NIfTI CT volumes.

Both are noise-free (the phantom by construction, the TotalSegmentator volumes because resampling to 1.5
or 3 mm averaged their noise away: ``../shared/data/README.md``), so their sources are marked
``clean_anatomy`` and ``tasks_ct`` gives each slice a routine scan's noise in the projection domain
(``degrade/ct_native``) before any other degradation. The NIfTI volumes are turned to axial slices as a
console shows them (radiological convention: anterior up, the patient's right on the image left) and
resampled in-plane to the pixel size of a body CT reconstruction, so that the noise added afterwards has
a scanner's grain, not the 3 mm voxel's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.ndimage import zoom

from mediqa.agent.dicom.records import series_key
from mediqa.errors import ConfigError
from mediqa.training.datagen.config import SourceSpec

log = logging.getLogger(__name__)

BODY_PIXEL_MM = 0.8  # in-plane pixel of a 512 body reconstruction at a ~400 mm field of view
AIR_HU = -1000.0


def nifti_path(spec: SourceSpec, data_root: Path) -> Path:
    """NIfTI paths are relative to the shared data folder (``data_root``'s parent: ``shared/data``)."""
    return data_root.parent / spec.path


def axial_slices_ras(data: np.ndarray) -> np.ndarray:
    """[x, y, z] in RAS+ -> [z, rows, cols] with anterior up and the patient's right on the image left."""
    return np.ascontiguousarray(data[::-1, ::-1, :].transpose(2, 1, 0))


def load_nifti_ct(spec: SourceSpec, data_root: Path) -> tuple[np.ndarray, tuple[float, float], float, str]:
    """(volume [Z, H, W] in HU at ``BODY_PIXEL_MM``, spacing, slice step mm, key text) of one CT volume."""
    import nibabel as nib

    path = nifti_path(spec, data_root)
    if not path.is_file():
        raise ConfigError(f"source '{spec.name}': {path} not found",
                          "put ../shared/data next to the repository or mark the source optional")
    img = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    vol = axial_slices_ras(data)  # [z, y, x]: rows along y (voxel zoom[1]), cols along x (zoom[0])
    factors = (1.0, zooms[1] / BODY_PIXEL_MM, zooms[0] / BODY_PIXEL_MM)
    vol = zoom(vol, factors, order=1).astype(np.float32)
    vol = np.maximum(vol, AIR_HU - 24.0)  # stored padding below air is air to a projector
    return vol, (BODY_PIXEL_MM, BODY_PIXEL_MM), zooms[2], f"nifti:{Path(spec.path).name}"


def phantom_key(spec: SourceSpec, seed: int) -> str:
    return series_key(f"body-phantom:{spec.path}:{'contrast' if spec.contrast else 'plain'}:{seed}")
