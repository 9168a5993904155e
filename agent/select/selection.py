"""What slice selection produces: which slices of a layout are scored, and how much each counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Selection:
    """Which slices of the layout are scored and how much each counts."""

    indices: tuple[int, ...]  # into layout.slices, in anatomical order
    weights: tuple[float, ...]  # importance, sums to 1
    saliency: tuple[float, ...] = ()  # per-slice saliency over the whole layout (may be empty)
    method: str = "salient"
