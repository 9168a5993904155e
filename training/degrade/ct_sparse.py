"""Sparse-view CT: reconstruct from a uniform subset of the projection angles (streak artefacts).

Reducing the number of views below the Nyquist requirement (~pi/2 x detector bins) leaves the
filtered back-projection with radial streaks from every high-contrast edge (Kak & Slaney,
"Principles of Computerized Tomographic Imaging", ch. 5). We add the difference between the sparse
and the full-view reconstruction of the same noise-free projections to the original slice, so the
degradation is the streak pattern alone and the original's own resolution is kept.
"""

from __future__ import annotations

import logging

import numpy as np

from mediqa.training.degrade.base import Degraded, ParamValue
from mediqa.training.degrade.ct_project import Projection

log = logging.getLogger(__name__)


class SparseViews:
    """Caches the full-view reconstruction so that several view counts of one slice share it."""

    def __init__(self, proj: Projection) -> None:
        self.proj = proj
        self._full: np.ndarray | None = None

    def full(self) -> np.ndarray:
        if self._full is None:
            self._full = self.proj.fbp_delta_hu(self.proj.line_integrals)
        return self._full

    def simulate(self, n_views: int) -> Degraded:
        """Streaks of an ``n_views`` reconstruction; ``n_views`` must divide the full view count."""
        full_views = self.proj.n_views
        if n_views <= 0 or full_views % n_views:
            raise ValueError(f"view count {n_views} must divide the simulated {full_views} views")
        step = full_views // n_views
        idx = np.arange(0, full_views, step)
        # Both reconstructions scale the same way, so their difference is the streak pattern in HU.
        sparse = self.proj.fbp_delta_hu(self.proj.line_integrals[:, idx], view_index=idx)
        image = self.proj.with_delta(sparse - self.full())
        params: dict[str, ParamValue] = {"n_views": n_views, "full_views": full_views, "undersampling": float(step),
                  "geometry": "parallel-beam, ramp FBP, uniform angular subset"}
        return Degraded("ct_sparse", image, params)
