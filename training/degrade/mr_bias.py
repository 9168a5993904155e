"""Intensity non-uniformity (bias field): a smooth multiplicative field from coil sensitivity and B1.

Modelled, as in N4 and TorchIO's RandomBiasField, as exp(polynomial) over normalised image coordinates
(Sled et al. 1998, IEEE TMI 17:87; Tustison et al. 2010, IEEE TMI 29:1310). Coefficients of every term up to
``order`` are drawn from U(-s, s); ``s`` (0.05 - 0.5) is the label, the realised coefficients are recorded.
"""

from __future__ import annotations

import logging

import numpy as np

from mediqa.training.degrade.base import Degraded, ParamValue

log = logging.getLogger(__name__)


def bias_field(shape: tuple[int, int], coefficients: list[float], order: int) -> np.ndarray:
    """exp(sum c_ij x^i y^j) for i + j <= order (constant term excluded: it is only a gain)."""
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    log_field = np.zeros(shape)
    terms = [(i, j) for i in range(order + 1) for j in range(order + 1 - i) if i + j > 0]
    if len(coefficients) != len(terms):
        raise ValueError(f"order {order} needs {len(terms)} coefficients, got {len(coefficients)}")
    for (i, j), c in zip(terms, coefficients, strict=True):
        log_field += c * x**i * y**j
    return np.exp(log_field)


def simulate_bias(image: np.ndarray, rng: np.random.Generator, strength: float, order: int = 3) -> Degraded:
    """Multiply by a random smooth field with coefficients in [-strength, strength]."""
    if strength < 0:
        raise ValueError(f"bias strength must not be negative, got {strength}")
    n_terms = (order + 1) * (order + 2) // 2 - 1
    coefficients = [float(c) for c in rng.uniform(-strength, strength, size=n_terms)]
    field = bias_field(image.shape, coefficients, order)
    params: dict[str, ParamValue] = {"strength": strength, "order": order, "coefficients": coefficients,
              "field_min": float(field.min()), "field_max": float(field.max())}
    return Degraded("mr_bias", image.astype(np.float64) * field, params)
