"""Small generated phantoms for the physics tests (no data files needed)."""

from __future__ import annotations

import numpy as np


def ellipse(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    return ((y - centre[0]) / radii[0]) ** 2 + ((x - centre[1]) / radii[1]) ** 2 <= 1.0


def ct_head(size: int = 256) -> np.ndarray:
    """Air, a 1000 HU skull ring, 40 HU brain with a few 70 HU / -20 HU inserts."""
    c = (size / 2, size / 2)
    img = np.full((size, size), -1000.0)
    img[ellipse((size, size), c, (0.42 * size, 0.36 * size))] = 1000.0
    img[ellipse((size, size), c, (0.38 * size, 0.32 * size))] = 40.0
    img[ellipse((size, size), (0.4 * size, 0.4 * size), (0.05 * size, 0.05 * size))] = 70.0
    img[ellipse((size, size), (0.6 * size, 0.6 * size), (0.04 * size, 0.06 * size))] = -20.0
    return img


def mr_object(shape: tuple[int, int] = (128, 128), offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A textured ellipse on a zero background (magnitude image without noise)."""
    h, w = shape
    img = np.zeros(shape)
    centre = (h / 2 + offset[0], w / 2 + offset[1])
    img[ellipse(shape, centre, (0.22 * h, 0.18 * w))] = 100.0
    img[ellipse(shape, (centre[0] - 0.08 * h, centre[1]), (0.06 * h, 0.05 * w))] = 160.0
    img[ellipse(shape, (centre[0] + 0.08 * h, centre[1] + 0.04 * w), (0.04 * h, 0.06 * w))] = 60.0
    return img
