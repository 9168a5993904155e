"""The downstream quality label until a site supplies expert scores: a physics-derived proxy.

It is a full-reference comparison of the degraded slice with its clean source on the clinical display
window (MS-SSIM), mapped to the 0 (bad) .. 4 (excellent) scale of the LDCT-IQA challenge. It is *not* an
expert score: it measures how far the image moved from its source, not diagnostic value, and it inherits
the source's own quality (a clean source scores 4 whatever it looks like). Everything downstream names it
"physics-derived proxy".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mediqa.training.labels.msssim import ms_ssim

log = logging.getLogger(__name__)

KIND = "physics-derived proxy, not an expert score"
METRIC = "MS-SSIM (Wang 2003, 5 scales) of degraded vs clean crop on the clinical window, clipped to [0, 1]"

# CT display windows (level, width) in HU by anatomy; the brain window is where head CT is read.
CT_WINDOWS: dict[str, tuple[float, float]] = {"head": (40.0, 80.0)}
CT_DEFAULT_WINDOW = (50.0, 400.0)  # soft tissue
MR_WINDOW_PERCENTILES = (0.5, 99.5)  # of the clean slice: how MR viewers auto-window


@dataclass(frozen=True)
class ProxyMapping:
    """Piecewise-linear map from MS-SSIM to 0..4 through (metric, score) anchors, increasing."""

    anchors: tuple[tuple[float, float], ...] = ((0.50, 0.0), (0.70, 1.0), (0.85, 2.0), (0.95, 3.0),
                                                 (0.99, 4.0))

    def __post_init__(self) -> None:
        xs = [a[0] for a in self.anchors]
        ys = [a[1] for a in self.anchors]
        if len(xs) < 2 or any(b <= a for a, b in zip(xs, xs[1:], strict=False)) or \
                any(b < a for a, b in zip(ys, ys[1:], strict=False)):
            raise ValueError(f"proxy mapping anchors must increase: {self.anchors}")

    def __call__(self, metric: float) -> float:
        xs = [a[0] for a in self.anchors]
        ys = [a[1] for a in self.anchors]
        return float(np.interp(metric, xs, ys))

    def describe(self) -> str:
        pts = ", ".join(f"{x:g}->{y:g}" for x, y in self.anchors)
        return f"piecewise linear through (MS-SSIM -> score) {pts}; constant beyond the ends"


def clinical_window(modality: str, anatomy: str, clean: np.ndarray,
                    header_window: tuple[float, float] | None = None) -> tuple[float, float]:
    """(low, high) of the display window used for the comparison.

    CT: the series' own WindowCenter/Width when the header has one (what the radiologist was given),
    else a standard window for the anatomy. MR: percentiles of the clean slice.
    """
    if modality == "CT":
        valid = header_window is not None and header_window[1] > 1
        level, width = header_window if valid else CT_WINDOWS.get(anatomy, CT_DEFAULT_WINDOW)  # type: ignore[misc]
        return level - width / 2.0, level + width / 2.0
    lo, hi = np.percentile(clean, MR_WINDOW_PERCENTILES)
    return float(lo), float(max(hi, lo + 1e-6))


def proxy_metric(clean: np.ndarray, degraded: np.ndarray, window: Sequence[float]) -> float:
    """MS-SSIM of the two images after windowing to [0, 1]."""
    lo, hi = float(window[0]), float(window[1])
    scale = lambda a: np.clip((a.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)  # noqa: E731
    return ms_ssim(scale(clean), scale(degraded), data_range=1.0)
