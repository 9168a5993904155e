"""A pseudo-CT head built from nilearn's MNI152 tissue maps: human head anatomy on the CT brain window.

The shared data has one human head CT, and it is the held-out test vendor; the CT the model trains on is
otherwise an air-filled phantom. This source gives training a human head in HU: grey and white matter
and CSF from the MNI152 2009 probability maps (shipped with nilearn, loads offline), a skull and scalp
grown outward from the brain by distance, air outside, resampled to 0.5 mm pixels (a 512 head CT's
size) with scanner-like correlated noise so the source's own noise can be measured and dose-calibrated.

Tissue values are textbook unenhanced head CT (Hounsfield units): grey matter ~38, white matter ~27, CSF
~8, diploe ~600 between cortical tables of ~1400, scalp ~30 with a fat layer of ~-90. It is a
simulation: it has no vessels, calcifications or beam hardening, and its anatomy is the smooth
average brain; the model card says so.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import binary_fill_holes, distance_transform_edt, gaussian_filter, zoom

log = logging.getLogger(__name__)

GREY_HU, WHITE_HU, CSF_HU = 38.0, 27.0, 8.0
TABLE_HU, DIPLOE_HU = 1400.0, 600.0
SCALP_HU, FAT_HU, AIR_HU = 30.0, -90.0, -1000.0
# Layers outward from the brain surface, mm: CSF/dura, skull, scalp (with a fat band inside it).
CSF_MM, SKULL_MM, SCALP_MM = 1.5, 6.5, 5.0
UPSAMPLE = 2  # 1 mm template -> 0.5 mm pixels
SOURCE_NOISE_HU = 4.0  # a standard head protocol's noise in brain tissue
NOISE_FWHM_MM = 0.9  # grain of a standard soft kernel
WINDOW = (40.0, 80.0)  # brain window (centre, width), as a head CT header gives it


def pseudo_ct_volume(seed: int = 0) -> tuple[np.ndarray, tuple[float, float], float]:
    """(volume [Z, Y, X] in HU, in-plane spacing mm, slice step mm), axial, anterior up."""
    from nilearn.datasets import load_mni152_gm_template, load_mni152_template, load_mni152_wm_template

    t1 = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    grey = np.asarray(load_mni152_gm_template(resolution=1).get_fdata(), dtype=np.float32)
    white = np.asarray(load_mni152_wm_template(resolution=1).get_fdata(), dtype=np.float32)
    brain = np.stack([binary_fill_holes(t1[..., z] > 0.05) for z in range(t1.shape[2])], axis=-1)
    outward = distance_transform_edt(~brain)  # mm from the brain surface (1 mm voxels)
    hu = head_hu(grey, white, brain, outward)
    # [x, y, z] -> [z, y (anterior up), x], as a viewer shows axial slices; then 0.5 mm pixels.
    vol = np.ascontiguousarray(np.rot90(hu, k=1, axes=(0, 1)).transpose(2, 0, 1))
    vol = zoom(vol, (1, UPSAMPLE, UPSAMPLE), order=1).astype(np.float32)
    spacing = 1.0 / UPSAMPLE
    rng = np.random.default_rng(seed)
    sigma_px = NOISE_FWHM_MM / (2.0 * np.sqrt(2.0 * np.log(2.0))) / spacing
    for z in range(vol.shape[0]):
        grain = gaussian_filter(rng.standard_normal(vol.shape[1:]), sigma_px, mode="wrap")
        vol[z] += (grain * (SOURCE_NOISE_HU / grain.std())).astype(np.float32)
    return vol, (spacing, spacing), 1.0


def head_hu(grey: np.ndarray, white: np.ndarray, brain: np.ndarray, outward_mm: np.ndarray) -> np.ndarray:
    """HU of every voxel from tissue probabilities inside the brain and distance outside it."""
    g, w = np.clip(grey, 0, 1), np.clip(white, 0, 1)
    total = np.maximum(g + w, 1.0)  # the maps may overlap slightly; never exceed one
    g, w = g / total, w / total
    csf = 1.0 - g - w
    hu = np.where(brain, g * GREY_HU + w * WHITE_HU + csf * CSF_HU, AIR_HU).astype(np.float32)
    d = outward_mm
    skull = (d > CSF_MM) & (d <= CSF_MM + SKULL_MM)
    depth = (d - CSF_MM) / SKULL_MM  # 0 at the inner table, 1 at the outer
    bone = DIPLOE_HU + (TABLE_HU - DIPLOE_HU) * np.abs(2.0 * depth - 1.0) ** 2
    scalp_in = CSF_MM + SKULL_MM
    scalp = (d > scalp_in) & (d <= scalp_in + SCALP_MM)
    fat = (d > scalp_in + 1.5) & (d <= scalp_in + 3.0)
    hu = np.where(~brain & (d <= CSF_MM), CSF_HU, hu)
    hu = np.where(skull, bone, hu)
    hu = np.where(scalp, np.where(fat, FAT_HU, SCALP_HU), hu)
    return hu.astype(np.float32)
