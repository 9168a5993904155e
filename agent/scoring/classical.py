"""The classical scorer: physical noise measures mapped to the 0..4 scale. The learned model's baseline.

CT: Global Noise Level (Christianson et al., Radiology 2015; ``mediqa.measures``, shared with the
    training data generator).
MR: MRIQC definitions (Esteban et al., PLoS One 2017): Dietrich SNR = mean(foreground) /
    (sqrt(2 / (4 - pi)) * std(background air)), since air in a magnitude image is Rayleigh
    distributed; and the entropy focus criterion (EFC; Atkinson 1997), which grows with ghosting
    and blur.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from mediqa import __version__
from mediqa.agent.scoring.base import SCORE_MAX, Provenance, SeriesInput, SliceScores
from mediqa.agent.select.skips import is_phase_image
from mediqa.errors import SeriesError
from mediqa.measures import slice_noise_hu

log = logging.getLogger(__name__)

# Score mapping (log-linear): CT noise <= 8 HU -> 4, >= 40 HU -> 0; MR SNR >= 30 -> 4, <= 3 -> 0.
CT_NOISE_BEST_HU, CT_NOISE_WORST_HU = 8.0, 40.0
MR_SNR_WORST, MR_SNR_BEST = 3.0, 30.0
_RAYLEIGH_STD_FACTOR = math.sqrt(2.0 / (4.0 - math.pi))  # std of Rayleigh air = 0.655 sigma


def mr_snr(slices: np.ndarray) -> tuple[float, list[float]]:
    """Dietrich SNR of the stack and per slice, from foreground signal and background-air noise."""
    vol = np.asarray(slices, dtype=np.float64)
    fg, bg = _mr_masks(vol)
    per_slice = [_snr(s[f], s[b]) for s, f, b in zip(vol, fg, bg, strict=True)]
    return _snr(vol[fg], vol[bg]), per_slice


def efc(slices: np.ndarray) -> float:
    """Entropy focus criterion, normalised to [0, 1] as MRIQC does; higher = more ghosting/blur."""
    x = np.abs(np.asarray(slices, dtype=np.float64)).ravel()
    n = x.size
    b_max = math.sqrt(float(np.sum(x * x)))
    if n == 0 or b_max == 0:
        return float("nan")
    efc_max = n * (1.0 / math.sqrt(n)) * math.log(1.0 / math.sqrt(n))
    p = x / b_max
    return float(np.sum(p * np.log(p + 1e-16)) / efc_max)


class ClassicalScorer:
    """Noise-based scorer. Fast, needs no model, and stays as the baseline the model must beat."""

    name = "classical"
    backend = "numpy"
    provenance = Provenance(model_name="classical", model_version=__version__, model_sha256=None)  # no model file

    def score(self, series: SeriesInput) -> SliceScores:
        if any(is_phase_image(r) for r in series.layout.records):
            # Even with the phase skip turned off: phase wraps between -pi and pi, and this scorer would
            # read them as noise (SNR about 0, a false RETAKE). Not measurable here, so not scored.
            raise SeriesError("phase images cannot be scored by the classical scorer (phase wraps are not noise)")
        if series.layout.modality == "CT":
            return self._score_ct(series)
        return self._score_mr(series)

    def close(self) -> None:
        return None

    def _score_ct(self, series: SeriesInput) -> SliceScores:
        spacing = series.layout.pixel_spacing[0] if series.layout.pixel_spacing else None
        levels = [slice_noise_hu(s, spacing) for s in series.slices]
        known = [v for v in levels if v is not None]
        series_noise = float(np.mean(known)) if known else float("nan")
        # A slice without enough soft tissue to measure gets the series' value; a series without any
        # scores NaN, which the pipeline reports as "not assessed" rather than as good.
        scores = tuple(ct_noise_to_score(v if v is not None else series_noise) for v in levels)
        return SliceScores(
            scores=scores,
            measures={"noise_hu": series_noise},
            slice_measures=tuple({"noise_hu": float("nan") if v is None else v} for v in levels),
            explanations={"noise_hu": f"image noise {series_noise:.1f} HU in soft tissue"},
        )

    def _score_mr(self, series: SeriesInput) -> SliceScores:
        snr, per_slice = mr_snr(series.slices)
        focus = efc(series.slices)
        scores = tuple(mr_snr_to_score(v if math.isfinite(v) else snr) for v in per_slice)
        return SliceScores(
            scores=scores,
            measures={"snr": snr, "efc": focus},
            slice_measures=tuple({"snr": v} for v in per_slice),
            explanations={"snr": f"low signal-to-noise ratio ({snr:.1f})", "efc": f"ghosting/blur (EFC {focus:.2f})"},
        )


def score_slice(image: np.ndarray, modality: str) -> float:
    """One slice's classical score (CT global noise level, MR SNR); NaN where it cannot be measured.

    Used as the evaluation's classical baseline on stored training slices (``mediqa eval``).
    """
    if modality.upper() == "CT":
        noise = slice_noise_hu(image)
        return ct_noise_to_score(noise) if noise is not None else math.nan
    snr, _ = mr_snr(np.asarray(image)[None])
    return mr_snr_to_score(snr) if math.isfinite(snr) else math.nan


def ct_noise_to_score(noise_hu: float) -> float:
    return _log_linear(noise_hu, CT_NOISE_WORST_HU, CT_NOISE_BEST_HU)


def mr_snr_to_score(snr: float) -> float:
    return _log_linear(snr, MR_SNR_WORST, MR_SNR_BEST)


def _log_linear(value: float, zero_at: float, best_at: float) -> float:
    if math.isnan(value):
        return float("nan")
    if value == math.inf:
        return SCORE_MAX if best_at > zero_at else 0.0
    if value <= 0:
        return 0.0 if zero_at < best_at else SCORE_MAX
    t = (math.log(value) - math.log(zero_at)) / (math.log(best_at) - math.log(zero_at))
    return float(SCORE_MAX * min(1.0, max(0.0, t)))


def _mr_masks(vol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head/body mask by Otsu threshold (filled, dilated); background = air well away from it."""
    thr = _otsu(vol)
    fg = np.zeros(vol.shape, bool)
    bg = np.zeros(vol.shape, bool)
    for i, s in enumerate(vol):
        # Signal: above the Otsu threshold. Head/body extent: a much lower threshold, filled, so dark
        # tissue (skull, CSF) is not mistaken for air; air is what lies well outside that extent.
        fg[i] = ndimage.binary_opening(s > thr, iterations=1)
        body = ndimage.binary_fill_holes(ndimage.binary_closing(s > thr / 4, iterations=2))
        grow = max(2, s.shape[0] // 32)
        air = ~ndimage.binary_dilation(body, iterations=grow)
        if air.mean() < 0.05:  # heavy noise fills the air above the low threshold: use the signal mask
            air = ~ndimage.binary_dilation(fg[i], iterations=grow)
        bg[i] = air
    return fg, bg


def _snr(fg: np.ndarray, bg: np.ndarray) -> float:
    if fg.size < 50 or bg.size < 50:
        return float("nan")
    # Zero-filled air (some vendors clip the background) has no measurable noise: SNR is then high.
    noise = max(float(np.std(bg)) / _RAYLEIGH_STD_FACTOR, 1e-6 * max(float(np.mean(fg)), 1e-6))
    return float(np.mean(fg) / noise) if noise > 0 else float("inf")


def _otsu(values: np.ndarray) -> float:
    v = values[np.isfinite(values)].ravel()
    hist, edges = np.histogram(v, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between))])
