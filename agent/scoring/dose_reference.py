"""What "the reference dose" means for a CT series: a routine scan of that anatomy with that kernel class.

Acceptable noise depends on what was scanned: a routine head CT is made at ~3-4x the CTDIvol of a body
scan (U.S. diagnostic reference levels, ACR Dose Index Registry: head 57 mGy, abdomen-pelvis 16 mGy,
chest 12 mGy; Kanal et al., Radiology 2017;284:120) and its brain noise is ~4-5 HU, while a routine
abdomen at a standard kernel carries ~10-15 HU in the liver (global noise level over 2358 abdominopelvic
exams: Christianson et al., AJR 2015;205:W93; lesion detection holds up to a noise index of ~15: AJR
2011;197:437). A sharp (bone/lung) kernel at the same dose is ~2-3x noisier than a soft one. So the
dose explanation names its reference (anatomy, kernel class, the routine noise), and for a sharp kernel
it converts the model's estimate, which was learned on soft-kernel reconstructions, to that kernel's
reference: a sharp kernel's own full-dose noise is not a low dose. The model card lists these levels
and their sources (agent/models/MODEL_CARD.md, "Reference doses").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mediqa.measures import slice_noise_hu

# Routine full-dose soft-tissue noise (HU) of an adult scan with a soft/standard kernel, by anatomy.
REFERENCE_NOISE_HU: dict[str, float] = {"head": 4.5, "neck": 9.0, "chest": 13.0, "abdomen": 11.0, "pelvis": 11.0,
                                        "spine": 12.0}
BODY_FALLBACK = "abdomen"  # an anatomy without its own reference (or unknown) is judged as a body scan
SHARP_NOISE_FACTOR = 2.5  # noise of a sharp kernel / a soft one at the same dose (bone, lung kernels)
DRL_CTDI_MGY: dict[str, float] = {"head": 57.0, "chest": 12.0, "abdomen": 16.0, "pelvis": 16.0}
MAX_NOISE_SLICES = 8  # slices measured for the "measured noise" figure (the cost stays small)
REFERENCE_THICKNESS_MM = 5.0  # the routine reconstruction the levels above describe
THICKNESS_RANGE_MM = (0.5, 10.0)  # outside it a header's SliceThickness is not used


@dataclass(frozen=True)
class DoseReference:
    anatomy: str  # whose reference it is ("abdomen" stands in for an unknown body part)
    kernel: str  # "soft" or "sharp"
    noise_hu: float  # routine full-dose noise for this anatomy and kernel
    assumed: tuple[str, ...] = ()  # what the prompt did not say ("anatomy", "kernel")

    def noise_at(self, thickness_mm: float | None) -> float:
        """Routine noise at this slice thickness: quantum noise SD ~ 1 / sqrt(thickness) (FBP)."""
        lo, hi = THICKNESS_RANGE_MM
        if thickness_mm is None or not lo <= thickness_mm <= hi:
            return self.noise_hu
        return self.noise_hu * math.sqrt(REFERENCE_THICKNESS_MM / thickness_mm)

    def label(self) -> str:
        what = "CT" if "anatomy" in self.assumed else f"{self.anatomy} CT"
        kernel = f"{self.kernel} kernel" + (" assumed" if "kernel" in self.assumed else "")
        return f"{what}, {kernel}"


def kernel_class(image_type: str) -> str | None:
    """``soft`` / ``sharp`` from the prompt's CT image type (ct_soft, ct_sharp_contrast...); None when unknown."""
    if image_type.startswith("ct_sharp"):
        return "sharp"
    if image_type.startswith("ct_soft"):
        return "soft"
    return None


def reference_for(prompt: Mapping[str, str]) -> DoseReference:
    anatomy = str(prompt.get("anatomy", "unknown"))
    kernel = kernel_class(str(prompt.get("image_type", "unknown")))
    assumed: list[str] = []
    if anatomy not in REFERENCE_NOISE_HU:
        assumed.append("anatomy")
        anatomy = BODY_FALLBACK
    if kernel is None:
        assumed.append("kernel")
        kernel = "soft"
    noise = REFERENCE_NOISE_HU[anatomy] * (SHARP_NOISE_FACTOR if kernel == "sharp" else 1.0)
    return DoseReference(anatomy, kernel, noise, tuple(assumed))


def dose_vs_reference(model_dose: float, ref: DoseReference) -> float:
    """The model's dose estimate (soft-kernel scale) as a fraction of this anatomy and kernel's reference.

    Noise variance ~ 1/dose, so a kernel k times noisier reads as 1/k^2 of the dose on the soft scale.
    """
    factor = SHARP_NOISE_FACTOR**2 if ref.kernel == "sharp" else 1.0
    return float(min(1.0, max(0.0, model_dose * factor)))


def measured_noise_hu(slices: np.ndarray, pixel_spacing_mm: float | None) -> float | None:
    """Median global noise level (HU) over up to ``MAX_NOISE_SLICES`` slices; None without soft tissue."""
    if slices.ndim != 3 or slices.shape[0] == 0:
        return None
    step = max(1, slices.shape[0] // MAX_NOISE_SLICES)
    found = [v for v in (slice_noise_hu(s, pixel_spacing_mm) for s in slices[::step]) if v is not None]
    return float(np.median(found)) if found else None


def describe_dose(fraction: float, ref: DoseReference, measured: float | None = None,
                  thickness_mm: float | None = None) -> str:
    """Plain words: ``noise like 25% of the reference dose for head CT, soft kernel (routine noise about 4.5 HU...)``.

    With a slice thickness the routine noise is the one at that thickness (a 1.25 mm body slice is about
    twice as noisy as a 5 mm one at the same dose), so the measured figure is compared with a like level.
    """
    text = f"noise like {fraction:.0%} of the reference dose for {ref.label()} (routine noise about "
    text += _hu(ref.noise_at(thickness_mm))
    lo, hi = THICKNESS_RANGE_MM
    if thickness_mm is not None and lo <= thickness_mm <= hi and thickness_mm != REFERENCE_THICKNESS_MM:
        text += f" at {thickness_mm:g} mm"
    if measured is not None and math.isfinite(measured):
        text += f"; measured about {_hu(measured)}"
    return text + ")"


def _hu(value: float) -> str:
    return f"{value:.1f} HU" if value < 10 else f"{value:.0f} HU"
