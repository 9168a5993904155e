"""The data builder's global noise level is the agent's, number for number.

The generator keeps its own copy (``training/degrade/ct_gnl.py``, inside the code the data set version
digests) so that training never imports the agent's scorer; this test is what keeps the two copies one
measure. If it fails, one side changed: decide whether the other follows (a generator change gives a
new data set version), then make them agree again.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from data_phantoms import ct_head

from mediqa.agent.scoring import classical
from mediqa.training.degrade import ct_gnl


@pytest.mark.parametrize(("sigma", "spacing"), [(0.0, 0.5), (4.0, 0.5), (15.0, 0.7), (40.0, None), (8.0, 2.0)])
def test_generator_gnl_equals_the_agents(sigma: float, spacing: float | None) -> None:
    rng = np.random.default_rng(int(sigma * 10))
    stack = np.stack([ct_head(192) + rng.normal(0.0, sigma, (192, 192)) for _ in range(2)])
    assert ct_gnl.slice_noise_hu(stack[0], spacing) == classical.slice_noise_hu(stack[0], spacing)
    assert ct_gnl.global_noise_level(stack, spacing) == classical.global_noise_level(stack, spacing)


def test_no_soft_tissue_is_unmeasurable_on_both() -> None:
    air = np.full((1, 96, 96), -1000.0)
    assert ct_gnl.slice_noise_hu(air[0]) is None and classical.slice_noise_hu(air[0]) is None
    assert math.isnan(ct_gnl.global_noise_level(air)) and math.isnan(classical.global_noise_level(air))
    assert (ct_gnl.SOFT_TISSUE_HU, ct_gnl.GNL_KERNEL_MM) == (classical.SOFT_TISSUE_HU, classical.GNL_KERNEL_MM)
