"""Upstream regression heads: which physical parameter each head predicts, and its exact label per sample.

A head's label is read from the parameters the degradation was made with. Heads of the sample's modality
that its degradation did not touch get their neutral value (dose fraction 1, no motion...), which is exact
because every degradation is relative to the source. The one exception is the MR SNR: a source's own SNR
is only an estimate, so non-noise MR samples leave it null (masked in the loss). Heads of the other
modality are null.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Head:
    name: str
    modality: str
    unit: str
    transform: str  # how the trainer turns the raw label into the target: "log2" or "identity"
    range: tuple[float, float]  # target range (after transform)
    kind: str  # the degradation whose parameter this is
    param: str  # the parameter's name in that degradation's params
    neutral: float | None  # label when the degradation was not applied (None: unknown)
    also: tuple[str, ...] = ()  # other degradations that set the same parameter (image noise: a dose)

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.kind, *self.also)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["range"] = [round(v, 6) for v in self.range]
        return data


HEADS: tuple[Head, ...] = (
    # Down to 1/256: image-domain noise of 45 HU on a quiet 3 HU source is the dose of ~0.4%.
    Head("ct_dose", "CT", "fraction of the source's dose", "log2", (-8.0, 0.0),
         "ct_dose", "dose_fraction", 1.0, also=("ct_noise",)),
    Head("ct_view_undersampling", "CT", "full views / views used (1 = all views)", "log2", (0.0, math.log2(6)),
         "ct_sparse", "undersampling", 1.0),
    Head("ct_blur_fwhm_mm", "CT", "added in-plane Gaussian PSF FWHM, mm", "identity", (0.0, 3.0),
         "ct_blur", "fwhm_mm", 0.0),
    Head("ct_slab_slices", "CT", "contiguous slices averaged into one", "log2", (0.0, math.log2(5)),
         "ct_blur", "slab_slices", 1.0),
    Head("mr_snr", "MR", "signal-to-noise ratio (foreground mean / sigma)", "log2", (math.log2(3), math.log2(40)),
         "mr_noise", "target_snr", None),
    Head("mr_motion_rms_mm", "MR", "RMS displacement over phase-encode lines, mm (rotation at 50 mm)",
         "identity", (0.0, 12.0), "mr_motion", "motion_rms_mm", 0.0),
    Head("mr_ghost", "MR", "intensity deficit of every n-th phase-encode line", "identity", (0.0, 0.6),
         "mr_ghost", "intensity", 0.0),
    Head("mr_spike", "MR", "spike amplitude relative to the k-space peak", "identity", (0.0, 0.5),
         "mr_spike", "relative_amplitude", 0.0),
    Head("mr_bias", "MR", "bias-field polynomial coefficient bound", "identity", (0.0, 0.6),
         "mr_bias", "strength", 0.0),
    Head("mr_acceleration", "MR", "k-space undersampling factor R", "log2", (0.0, 3.0),
         "mr_undersample", "acceleration", 1.0),
    Head("mr_truncation", "MR", "1 / kept fraction of k-space per axis", "log2", (0.0, 2.0),
         "mr_truncation", "keep_fraction", 1.0),
)

# Parameters stored as something other than the head's unit.
_CONVERT: dict[str, Callable[[float], float]] = {"mr_truncation": lambda keep: 1.0 / keep}


def head_labels(modality: str, kind: str, params: Mapping[str, Any]) -> dict[str, float | None]:
    """Exact labels of every head for one sample (``kind`` = degradation type, "none" for a clean copy)."""
    labels: dict[str, float | None] = {}
    for head in HEADS:
        if head.modality != modality:
            labels[head.name] = None
        elif kind in head.kinds:
            raw = float(params[head.param])
            labels[head.name] = _CONVERT.get(head.name, lambda v: v)(raw)
        else:
            labels[head.name] = head.neutral
    return labels
