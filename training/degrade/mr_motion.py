"""Rigid patient motion during an MR acquisition, simulated line by line in k-space.

Each phase-encode line is acquired at its own time; if the head moved, the lines acquired after the
move see a rotated/translated object (Fourier shift theorem: translation = linear phase ramp). Mixing
lines from different poses gives ghosts and blurring *along the phase-encode axis only* (Zaitsev et al.
2015, JMRI 42:887; Shaw et al. 2019, MIDL). The central lines (contrast, object position) are acquired at
the reference pose, as in a centre-out or linear scan whose centre falls before the motion.
TorchIO's RandomMotion mixes along the 3rd array axis only, so on a 2D slice it does nothing useful:
here the phase-encode axis comes from the series header (InPlanePhaseEncodingDirection).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from mediqa.training.degrade.base import Degraded, DegradedVolume, ParamValue
from mediqa.training.degrade.kspace import centre_lines, fft2c, ifft2c

log = logging.getLogger(__name__)

LEVER_MM = 50.0  # radius at which a rotation is converted to displacement (a head's half-width)


def _moved_kspace(image: np.ndarray, shift_px: np.ndarray, angle_deg: float, kaxes: tuple[int, ...],
                  rot_axes: tuple[int, int]) -> np.ndarray:
    """k-space of the object after an in-plane rotation (interpolated) and a translation (exact phase)."""
    moved = ndimage.rotate(image, angle_deg, axes=rot_axes, reshape=False, order=1, mode="constant") \
        if angle_deg else image
    k = fft2c(moved, axes=kaxes)
    phase = np.zeros(k.shape, dtype=np.float64)
    for ax, shift in zip(kaxes, shift_px, strict=True):
        freq = np.fft.fftshift(np.fft.fftfreq(image.shape[ax]))
        shape = [1] * image.ndim
        shape[ax] = freq.size
        phase = phase + freq.reshape(shape) * shift
    return k * np.exp(-2j * np.pi * phase)


def simulate_motion_2d(image: np.ndarray, pe_axis: int, spacing_mm: tuple[float, float],
                       rng: np.random.Generator, max_translation_mm: float, max_rotation_deg: float,
                       n_shots: int = 16, moving_fraction: float = 0.5, centre_fraction: float = 0.08
                       ) -> Degraded:
    """One slice (``[H, W]``), ``pe_axis`` 0 or 1, lines corrupted shot by shot."""
    kspace, params = corrupt_kspace(image, pe_axis, spacing_mm, rng, max_translation_mm, max_rotation_deg,
                                    n_shots, moving_fraction, centre_fraction)
    return Degraded("mr_motion", np.abs(ifft2c(kspace)), params)


def simulate_motion_3d(volume: np.ndarray, pe_axis: int, spacing_mm: tuple[float, float, float],
                       rng: np.random.Generator, max_translation_mm: float, max_rotation_deg: float,
                       n_shots: int = 16, moving_fraction: float = 0.5, centre_fraction: float = 0.08
                       ) -> DegradedVolume:
    """A 3D acquisition (``[Z, H, W]``, partition encoding along axis 0, ``pe_axis`` 1 or 2).

    A shot is a slab of in-plane phase-encode lines across all partitions, so every slice of the volume
    shows the same motion, with through-plane translation mixing neighbouring slices.
    """
    kspace, params = corrupt_kspace(volume, pe_axis, spacing_mm, rng, max_translation_mm, max_rotation_deg,
                                    n_shots, moving_fraction, centre_fraction)
    return DegradedVolume("mr_motion", np.abs(ifft2c(kspace, axes=(0, 1, 2))), params)


def corrupt_kspace(image: np.ndarray, pe_axis: int, spacing_mm: tuple[float, ...], rng: np.random.Generator,
                   max_translation_mm: float, max_rotation_deg: float, n_shots: int = 16,
                   moving_fraction: float = 0.5, centre_fraction: float = 0.08
                   ) -> tuple[np.ndarray, dict[str, ParamValue]]:
    """Corrupted centred k-space (all axes) and the parameters: the lines of ``moving_fraction`` of the
    non-central shots are replaced by those of a moved object."""
    ndim = image.ndim
    if ndim not in (2, 3) or pe_axis not in range(ndim - 2, ndim):
        raise ValueError(f"phase-encode axis {pe_axis} must be an in-plane axis of shape {image.shape}")
    if len(spacing_mm) != ndim:
        raise ValueError(f"need {ndim} spacings, got {spacing_mm}")
    kaxes = tuple(range(ndim))
    rot_axes = (ndim - 2, ndim - 1)
    n_lines = image.shape[pe_axis]
    centre = centre_lines(n_lines, centre_fraction)
    shot_of_line = (np.arange(n_lines) * n_shots) // n_lines
    centre_shots = set(np.unique(shot_of_line[centre]).tolist())
    candidates = [s for s in range(n_shots) if s not in centre_shots]
    n_moving = int(round(moving_fraction * len(candidates)))
    moving = sorted(rng.choice(candidates, size=n_moving, replace=False).tolist()) if n_moving else []

    work = image.astype(np.float64)
    kspace = fft2c(work, axes=kaxes)
    poses: list[dict[str, ParamValue]] = []
    displacement = np.zeros(n_lines)
    for shot in moving:
        t_mm = rng.uniform(-max_translation_mm, max_translation_mm, size=ndim)
        if ndim == 3:
            t_mm[0] *= 0.5  # through-plane motion of a head is smaller than in-plane
        angle = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
        shift_px = t_mm / np.asarray(spacing_mm, dtype=np.float64)
        lines = (shot_of_line == shot) & ~centre
        sel: list[slice | np.ndarray] = [slice(None)] * ndim
        sel[pe_axis] = lines
        kspace[tuple(sel)] = _moved_kspace(work, shift_px, angle, kaxes, rot_axes)[tuple(sel)]
        displacement[lines] = float(np.linalg.norm(t_mm)) + abs(np.deg2rad(angle)) * LEVER_MM
        poses.append({"shot": int(shot), "translation_mm": [float(v) for v in t_mm], "rotation_deg": angle})
    params: dict[str, ParamValue] = {
        "dimension": f"{ndim}D", "pe_axis": pe_axis, "n_shots": n_shots, "moving_fraction": moving_fraction,
        "centre_fraction": centre_fraction, "max_translation_mm": max_translation_mm,
        "max_rotation_deg": max_rotation_deg, "lever_mm": LEVER_MM, "ordering": "linear",
        "motion_rms_mm": float(np.sqrt(np.mean(displacement**2))), "poses": poses,
    }
    return kspace, params
