"""Severity ceilings: the highest proxy quality a slice may have, given the physical damage it was made with.

Why: MS-SSIM on the display window undercounts damage that a reader would not accept. On a body CT's soft
tissue window (400 HU wide) a 10 % dose scan keeps MS-SSIM near 0.9, which the proxy mapping calls
"acceptable", and a 4 mm motion on a structural MR keeps most of its structure. The issue asks that the most
severe simulated level of every family alerts on every source; a label that says "acceptable" for it cannot
teach that. So the proxy label is the lower of the MS-SSIM score and a ceiling read from the exact physical
label of the degradation (docs/dataset-format.md, "quality").

Each ceiling is piecewise linear through (parameter, score) anchors, in log2 of the parameter where the head
is log2 (dose, views, SNR, acceleration, truncation). The anchors put a mild level (75-50 % dose, SNR 20,
R = 2) at or near 4, a level a site would still read (25 % dose: the LDCT challenge's quarter dose; SNR 10;
R = 4) near 3..2.5, and the grid's top (5-10 % dose, SNR 3-5, 4 mm motion, 60 views, R = 8) below the retake
threshold of 2. They are a design choice written down here and in the model card, not an expert score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mediqa.training.labels.heads import HEADS

LABEL_RULE = "min(MS-SSIM mapping, severity ceiling of the degradation's physical label)"


@dataclass(frozen=True)
class Ceiling:
    """Ceiling on the quality score as a function of one head's exact label."""

    head: str
    anchors: tuple[tuple[float, float], ...]  # (label in the head's unit, highest score), label increasing
    log2: bool

    def __call__(self, value: float) -> float:
        xs = [math.log2(a[0]) if self.log2 else a[0] for a in self.anchors]
        x = math.log2(max(value, 1e-12)) if self.log2 else value
        return float(np.interp(x, xs, [a[1] for a in self.anchors]))

    def describe(self) -> str:
        pts = ", ".join(f"{x:g}->{y:g}" for x, y in self.anchors)
        return f"{self.head}: {pts}{' (log2)' if self.log2 else ''}"


CEILINGS: dict[str, Ceiling] = {c.head: c for c in (
    # Dose fraction of the source's routine scan (image-domain noise counts as its equivalent dose).
    Ceiling("ct_dose", ((0.02, 0.0), (0.05, 0.5), (0.1, 1.5), (0.25, 3.0), (0.5, 4.0)), log2=True),
    Ceiling("ct_view_undersampling", ((1.0, 4.0), (2.0, 3.5), (4.0, 2.5), (6.0, 1.5)), log2=True),
    Ceiling("ct_blur_fwhm_mm", ((0.8, 4.0), (1.6, 3.0), (2.4, 1.5), (3.0, 1.0)), log2=False),
    Ceiling("mr_snr", ((3.0, 0.5), (5.0, 1.5), (10.0, 2.75), (20.0, 3.5), (40.0, 4.0)), log2=True),
    Ceiling("mr_motion_rms_mm", ((1.0, 4.0), (1.5, 3.25), (2.0, 2.0), (3.0, 1.25), (5.0, 0.5)), log2=False),
    Ceiling("mr_ghost", ((0.1, 4.0), (0.2, 3.0), (0.5, 1.5)), log2=False),
    Ceiling("mr_spike", ((0.02, 4.0), (0.05, 3.5), (0.2, 1.5)), log2=False),
    Ceiling("mr_bias", ((0.2, 4.0), (0.5, 1.75)), log2=False),
    Ceiling("mr_acceleration", ((1.0, 4.0), (2.0, 3.5), (4.0, 2.5), (8.0, 1.25)), log2=True),
    Ceiling("mr_truncation", ((1.0, 4.0), (2.0, 3.5), (1 / 0.3, 1.5)), log2=True),
)}

# The heads each degradation may be capped by (a slab average is a protocol choice, not damage: uncapped).
_KIND_HEADS: dict[str, tuple[str, ...]] = {
    h.kind: tuple(x.name for x in HEADS if h.kind in x.kinds and x.name in CEILINGS) for h in HEADS}
_KIND_HEADS["ct_noise"] = ("ct_dose",)


def severity_ceiling(kind: str, labels: Mapping[str, float | None]) -> float:
    """Highest quality a slice degraded by ``kind`` with these exact head labels may be given (4 = none)."""
    caps = [CEILINGS[name](float(value)) for name in _KIND_HEADS.get(kind, ())
            if (value := labels.get(name)) is not None and math.isfinite(float(value))]
    return min(caps, default=4.0)


def capped_quality(msssim_score: float, kind: str, labels: Mapping[str, float | None]) -> tuple[float, float]:
    """(quality label, ceiling) of one sample: the one place the label rule (``LABEL_RULE``) is applied."""
    ceiling = severity_ceiling(kind, labels)
    return round(min(msssim_score, ceiling), 4), round(ceiling, 4)


def describe() -> list[str]:
    return [c.describe() for c in CEILINGS.values()]
