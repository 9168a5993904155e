"""Centred k-space transforms and the phase-encode axis of a DICOM slice.

MR artefacts from motion, ghosting, spikes and undersampling happen in k-space, line by line along the
phase-encode direction (each phase-encode line is one readout, acquired at its own time). Magnitude
images are treated as the object (zero phase), the usual simplification (Shaw et al. 2019, MIDL,
"MRI k-space motion artefact augmentation"; TorchIO's MR transforms).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def fft2c(image: np.ndarray, axes: tuple[int, ...] = (-2, -1)) -> np.ndarray:
    """Centred, orthonormal DFT: energy is preserved and the DC term sits in the middle."""
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes)


def ifft2c(kspace: np.ndarray, axes: tuple[int, ...] = (-2, -1)) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(kspace, axes=axes), axes=axes, norm="ortho"), axes=axes)


def pe_axis(direction: str | None, shape: tuple[int, int]) -> int:
    """Array axis along which phase-encode lines are stacked for a slice of ``shape``.

    DICOM InPlanePhaseEncodingDirection (0018,1312): ``COL`` = phase encoding along the columns, i.e.
    up-down = array axis 0; ``ROW`` = along the rows, left-right = axis 1. When the header lacks it,
    the shorter matrix side is the usual phase-encode choice (fewer lines, shorter scan).
    """
    value = (direction or "").strip().upper()
    if value == "COL":
        return 0
    if value == "ROW":
        return 1
    axis = 0 if shape[0] < shape[1] else 1 if shape[1] < shape[0] else 0
    log.debug("no phase-encode direction in header; assuming axis %d", axis)
    return axis


def centre_lines(n_lines: int, fraction: float) -> np.ndarray:
    """Boolean mask of the central ``fraction`` of ``n_lines`` phase-encode lines (at least one)."""
    keep = max(1, int(round(n_lines * fraction)))
    mask = np.zeros(n_lines, dtype=bool)
    start = n_lines // 2 - keep // 2
    mask[start:start + keep] = True
    return mask


def along(mask_1d: np.ndarray, axis: int, ndim: int = 2) -> np.ndarray:
    """Reshape a per-line vector so it broadcasts along ``axis`` of a k-space array."""
    shape = [1] * ndim
    shape[axis] = mask_1d.size
    return mask_1d.reshape(shape)
