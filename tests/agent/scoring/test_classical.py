"""The classical measures move the right way when noise is added to real images."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.volume import plan_series
from mediqa.agent.scoring.classical import ct_noise_to_score, efc, mr_snr, mr_snr_to_score
from mediqa.measures import global_noise_level


def _slices(root, n=5):
    (recs,) = scan_tree(root).values()
    layout = plan_series(recs)
    idx = np.linspace(layout.n_slices * 0.3, layout.n_slices * 0.7, n).astype(int)
    return layout, layout.read_slices(list(idx))


@pytest.mark.slow
def test_ct_noise_level_rises_with_added_noise(shared_dicom):
    layout, hu = _slices(shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010")
    rng = np.random.default_rng(0)
    levels = [global_noise_level(hu + rng.normal(0, sd, hu.shape), layout.pixel_spacing[0]) for sd in (0, 10, 20)]
    assert levels[0] < 8  # a standard-dose head phantom
    assert levels[0] < levels[1] < levels[2]
    # Independent noise adds in quadrature: within 25% of sqrt(base^2 + 20^2).
    assert abs(levels[2] - np.hypot(levels[0], 20)) / np.hypot(levels[0], 20) < 0.25
    assert ct_noise_to_score(levels[0]) > ct_noise_to_score(levels[2])


@pytest.mark.slow
def test_mr_snr_falls_and_efc_rises_with_rician_noise(shared_dicom):
    _, img = _slices(shared_dicom / "dcm_qa_philips_enh/In/cl")
    rng = np.random.default_rng(1)
    sigma_ref = float(np.percentile(img, 99))
    snrs, efcs = [], []
    for f in (0.0, 0.02, 0.05, 0.1):
        noisy = np.hypot(img + rng.normal(0, f * sigma_ref, img.shape), rng.normal(0, f * sigma_ref, img.shape))
        snrs.append(mr_snr(noisy)[0])
        efcs.append(efc(noisy))
    assert all(a > b for a, b in zip(snrs, snrs[1:], strict=False)), snrs
    assert all(a < b for a, b in zip(efcs, efcs[1:], strict=False)), efcs
    assert mr_snr_to_score(snrs[0]) >= mr_snr_to_score(snrs[-1])
