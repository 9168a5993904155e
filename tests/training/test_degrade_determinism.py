"""Same seed -> same bytes, for every degradation; a different seed changes the random ones."""

from __future__ import annotations

import numpy as np
from data_phantoms import ct_head, mr_object

from mediqa.training.degrade.base import child_rng
from mediqa.training.degrade.ct_dose import DoseCalibration, simulate_dose
from mediqa.training.degrade.ct_project import Projection
from mediqa.training.degrade.mr_bias import simulate_bias
from mediqa.training.degrade.mr_kspace import simulate_undersampling
from mediqa.training.degrade.mr_motion import simulate_motion_2d
from mediqa.training.degrade.mr_noise import simulate_snr
from mediqa.training.degrade.mr_spike import simulate_spike

IMG = mr_object((96, 96))
RUNS = {
    "noise": lambda rng: simulate_snr(IMG, 8.0, rng),
    "motion": lambda rng: simulate_motion_2d(IMG, 0, (1.0, 1.0), rng, 3.0, 3.0),
    "spike": lambda rng: simulate_spike(IMG, rng, 0.1),
    "bias": lambda rng: simulate_bias(IMG, rng, 0.3),
    "undersample": lambda rng: simulate_undersampling(IMG, 1, 4.0, rng),
}


def test_mr_degradations_are_reproducible() -> None:
    for name, run in RUNS.items():
        a, b, c = run(child_rng(3, "s", 1, name)), run(child_rng(3, "s", 1, name)), run(child_rng(4, "s", 1, name))
        assert a.image.tobytes() == b.image.tobytes(), name
        assert a.plain_params() == b.plain_params(), name
        assert a.image.tobytes() != c.image.tobytes(), name


def test_ct_dose_is_reproducible() -> None:
    proj = Projection.of(ct_head(96), 1.0, 60)
    calib = DoseCalibration(i0=1e6, source_noise_hu=5.0, reference_noise_hu=20.0, electronic_sigma=3.0)
    a = simulate_dose(proj, 0.25, calib, child_rng(1, "x")).image
    b = simulate_dose(proj, 0.25, calib, child_rng(1, "x")).image
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, simulate_dose(proj, 0.25, calib, child_rng(2, "x")).image)
