"""Motion: k-space centre and object position kept; ghosts only along the phase-encode axis."""

from __future__ import annotations

import numpy as np
import pytest
from data_phantoms import mr_object

from mediqa.training.degrade.kspace import centre_lines, fft2c, pe_axis
from mediqa.training.degrade.mr_motion import corrupt_kspace, simulate_motion_2d, simulate_motion_3d

SPACING = (1.0, 1.0)


def _centroid(img: np.ndarray) -> np.ndarray:
    grid = np.mgrid[: img.shape[0], : img.shape[1]]
    return np.array([(g * img).sum() / img.sum() for g in grid])


@pytest.mark.parametrize("axis", [0, 1])
def test_centre_lines_are_untouched(axis: int) -> None:
    img = mr_object()
    k, params = corrupt_kspace(img, axis, SPACING, np.random.default_rng(0), 4.0, 4.0)
    centre = centre_lines(img.shape[axis], params["centre_fraction"])
    ref = fft2c(img)
    sel = [slice(None), slice(None)]
    sel[axis] = centre
    np.testing.assert_allclose(k[tuple(sel)], ref[tuple(sel)])
    assert not np.allclose(k, ref), "some lines must have been corrupted"
    assert params["motion_rms_mm"] > 0 and len(params["poses"]) > 0


@pytest.mark.parametrize("axis", [0, 1])
def test_ghosts_only_along_the_phase_encode_axis(axis: int) -> None:
    img = mr_object((128, 128))
    out = simulate_motion_2d(img, axis, SPACING, np.random.default_rng(1), max_translation_mm=4.0,
                             max_rotation_deg=0.0, moving_fraction=0.6)
    err = np.abs(out.image - img)
    # The object spans rows 36..92 and columns 41..87; translations are at most 4 px.
    inside_ro = slice(36, 93) if axis == 1 else slice(41, 88)
    along_pe = err[:25, inside_ro] if axis == 0 else err[inside_ro, :25]  # beyond the object along PE
    along_ro = err[inside_ro, :25] if axis == 0 else err[:25, inside_ro]  # beyond it along readout
    # Error energy: ghosts along PE; along the readout only the faint sinc tails of sub-pixel shifts.
    pe_energy, ro_energy = float((along_pe**2).mean()), float((along_ro**2).mean())
    assert pe_energy > 15 * ro_energy, (pe_energy, ro_energy)
    np.testing.assert_allclose(_centroid(out.image), _centroid(img), atol=0.5)


def test_3d_motion_keeps_shape_and_centre() -> None:
    vol = np.stack([mr_object((64, 64))] * 12)
    out = simulate_motion_3d(vol, 1, (2.0, 1.0, 1.0), np.random.default_rng(2), 3.0, 3.0, n_shots=8)
    assert out.volume.shape == vol.shape
    assert out.params["dimension"] == "3D"
    assert not np.allclose(out.volume, vol, atol=1.0)
    np.testing.assert_allclose(_centroid(out.volume[6]), _centroid(vol[6]), atol=0.7)
    assert out.slice(6).params["volume_slice"] == 6


def test_phase_encode_axis_from_header() -> None:
    assert pe_axis("COL", (256, 256)) == 0
    assert pe_axis("ROW", (256, 256)) == 1
    assert pe_axis("", (192, 256)) == 0  # shorter side when unknown
    with pytest.raises(ValueError):
        simulate_motion_2d(mr_object(), 2, SPACING, np.random.default_rng(0), 1.0, 1.0)
