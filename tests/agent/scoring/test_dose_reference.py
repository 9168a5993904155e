"""The dose explanation names its reference: a routine scan of the series' anatomy with its kernel class."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa.agent.scoring.dose_reference import (
    REFERENCE_NOISE_HU,
    SHARP_NOISE_FACTOR,
    describe_dose,
    dose_vs_reference,
    measured_noise_hu,
    reference_for,
)


def _prompt(anatomy: str, image_type: str) -> dict[str, str]:
    return {"dimension": "3D", "modality": "CT", "anatomy": anatomy, "image_type": image_type}


def test_head_and_abdomen_have_their_own_reference_noise():
    head = reference_for(_prompt("head", "ct_soft"))
    abdomen = reference_for(_prompt("abdomen", "ct_soft_contrast"))
    assert head.noise_hu == REFERENCE_NOISE_HU["head"] < abdomen.noise_hu == REFERENCE_NOISE_HU["abdomen"]
    assert describe_dose(0.25, head).startswith("noise like 25% of the reference dose for head CT, soft kernel")
    assert "abdomen CT, soft kernel (routine noise about 11 HU)" in describe_dose(0.25, abdomen)


def test_a_sharp_kernels_own_noise_is_not_a_low_dose():
    sharp = reference_for(_prompt("chest", "ct_sharp"))
    assert sharp.kernel == "sharp" and sharp.noise_hu == pytest.approx(REFERENCE_NOISE_HU["chest"] * SHARP_NOISE_FACTOR)
    # A full-dose sharp reconstruction reads as 1/k^2 of the dose on the soft-kernel scale the model learned.
    assert dose_vs_reference(1.0 / SHARP_NOISE_FACTOR**2, sharp) == pytest.approx(1.0)
    assert dose_vs_reference(0.04, sharp) == pytest.approx(0.04 * SHARP_NOISE_FACTOR**2)
    soft = reference_for(_prompt("chest", "ct_soft"))
    assert dose_vs_reference(0.16, soft) == pytest.approx(0.16)


def test_unknown_anatomy_and_kernel_are_said_to_be_assumed():
    ref = reference_for(_prompt("unknown", "unknown"))
    assert ref.assumed == ("anatomy", "kernel") and ref.kernel == "soft"
    assert "for CT, soft kernel assumed" in describe_dose(0.1, ref)


def test_measured_noise_is_reported_in_hu():
    rng = np.random.default_rng(0)
    water = rng.normal(40.0, 12.0, size=(3, 128, 128)).astype(np.float32)
    measured = measured_noise_hu(water, 0.8)
    assert measured == pytest.approx(12.0, rel=0.15)
    assert "measured about 12 HU" in describe_dose(0.3, reference_for(_prompt("abdomen", "ct_soft")), measured)
    assert measured_noise_hu(np.full((2, 64, 64), -1000.0, np.float32), 0.8) is None  # air: nothing to measure


def test_thin_slices_are_compared_with_the_routine_noise_at_their_thickness():
    ref = reference_for(_prompt("abdomen", "ct_soft_contrast"))
    assert ref.noise_at(1.25) == pytest.approx(2.0 * ref.noise_at(5.0))  # SD ~ 1/sqrt(thickness)
    assert ref.noise_at(None) == ref.noise_at(5.0) == ref.noise_at(80.0) == REFERENCE_NOISE_HU["abdomen"]
    words = describe_dose(0.02, ref, 30.0, thickness_mm=1.25)
    assert "routine noise about 22 HU at 1.25 mm; measured about 30 HU" in words
    assert " mm" not in describe_dose(0.02, ref, 30.0, thickness_mm=5.0).split("HU")[0]
