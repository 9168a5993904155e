"""The learned scorer: the exported MedIQA Edge model on the best available backend (no torch).

Everything about feeding the model comes from its model card: crop size and count, CT windows,
MR percentiles, prompt vocabulary, score range, and the physical heads whose outputs explain a
low score in plain words (noise like 25% dose, motion, ghosting...).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mediqa.agent.config import AgentConfig
from mediqa.agent.scoring.base import Provenance, SeriesInput, SliceScores
from mediqa.agent.scoring.dose_reference import describe_dose, dose_vs_reference, measured_noise_hu, reference_for
from mediqa.agent.scoring.models import file_sha256, gate_model, resolve_model
from mediqa.agent.scoring.slice_outputs import SliceOutputs
from mediqa.model_card import ModelCard, read_card
from mediqa.preprocess import prepare, prompt_indices

if TYPE_CHECKING:
    from mediqa.engines.backends.base import Backend
    from mediqa.engines.chain import SkipReason

log = logging.getLogger(__name__)

# Plain words for a head whose value is far from "nothing wrong". {v} is the value in the head's unit.
HEAD_WORDS: dict[str, str] = {
    "ct_dose": "noise like {v:.0%} of the reference dose",
    "ct_view_undersampling": "streaks (as with {v:.1f}x fewer projection views)",
    "ct_blur_fwhm_mm": "blur (about {v:.1f} mm)",
    "ct_slab_slices": "partial-volume blur (like {v:.1f} slices averaged)",
    "mr_snr": "low signal-to-noise (SNR about {v:.0f})",
    "mr_motion_rms_mm": "motion (about {v:.1f} mm RMS)",
    "mr_ghost": "ghosting (line deficit {v:.2f})",
    "mr_spike": "spike / herringbone artefact",
    "mr_bias": "intensity bias field",
    "mr_acceleration": "undersampling artefacts (R about {v:.1f})",
    "mr_truncation": "ringing (truncation {v:.1f}x)",
}
NOTABLE_FRACTION = 0.35  # of a head's range away from neutral before it is worth saying
LOW_SNR = 10.0


class LearnedScorer:
    name = "learned"

    def __init__(self, model_path: Path, card: ModelCard, backend: Backend, skipped: list[SkipReason], *,
                 sha256: str | None = None, unevaluated: str | None = None) -> None:
        self.model_path = model_path
        self.card = card
        self._backend = backend
        self.skipped = skipped
        self.backend = backend.name
        # Hashed once, at load: every result names the exact file that scored it.
        self.provenance = Provenance(card.name, card.version, sha256 or file_sha256(model_path))
        self.unevaluated = unevaluated  # what the deploy gate found wrong, when the override let it run
        self.outputs = SliceOutputs()  # per slice, by its exact input: a slice passed before is not passed again

    @classmethod
    def from_config(cls, config: AgentConfig) -> LearnedScorer:
        """Load the configured model through the deploy gate (``gate_model``), on the first backend that works."""
        from mediqa.engines import select_backend

        model_path = resolve_model(config.scoring.model)
        sha256 = file_sha256(model_path)
        card = read_card(model_path)
        unevaluated = gate_model(card, model_path, bool(getattr(config.scoring, "allow_unevaluated_model", False)))
        backend, skipped = select_backend(model_path, config.scoring.backends, threads=config.scoring.threads,
                                          engine_cache=config.engine_cache_path, slices=config.scoring.slices,
                                          build_engines=config.scoring.build_engines)
        scorer = cls(model_path, card, backend, skipped, sha256=sha256, unevaluated=unevaluated)
        scorer._warm_up(config.scoring.slices)
        return scorer

    def describe(self) -> str:
        skipped = "; ".join(f"{s.backend} skipped: {s.message}" for s in self.skipped)
        text = (f"{self.card.name} v{self.card.version} ({self.model_path.name}, "
                f"sha256 {(self.provenance.model_sha256 or '')[:12]})")
        if self.unevaluated:
            text += " UNEVALUATED (allowed by scoring.allow_unevaluated_model)"
        return f"{text}; {skipped}" if skipped else text

    def _warm_up(self, slices: int = 1) -> None:
        """One inference before the agent reports ready, at the batch of a series of ``slices`` slices, so the
        first series is not the slow one: after a one-slice warm-up the first 7-slice pass grew the model's
        buffers (21-24k page faults against 14.6k; 280-516 against 187-300 ms, four runs each of the 2,000-slice
        CT written at once, docs/performance.md)."""
        pre = self.card.preprocessing
        n = max(1, slices) * pre.crops_per_slice
        if self._backend.batch_range is not None:  # an engine's optimization profile bounds the batch
            n = max(self._backend.batch_range[0], min(n, self._backend.batch_range[1]))
        image = np.zeros((n, pre.channels, pre.crop_size, pre.crop_size), np.float32)
        prompt = np.zeros((n, 4), np.int64)
        self._backend.infer({"image": image, "prompt": prompt})

    def score(self, series: SeriesInput) -> SliceScores:
        modality = series.layout.modality
        out, owner = self._run(series)
        quality = np.asarray(out["quality"], dtype=np.float64).reshape(-1)
        k = series.slices.shape[0]
        per_slice = [float(quality[owner == i].mean()) if np.any(owner == i) else float("nan") for i in range(k)]
        measures, explanations = self._heads(np.asarray(out.get("physics", np.zeros((len(owner), 0)))), modality)
        if "ct_dose" in measures:
            self._explain_dose(series, measures["ct_dose"], explanations)
        return SliceScores(scores=tuple(per_slice), measures=measures, explanations=explanations)

    def prime(self, series: SeriesInput) -> int:
        """Pass ``series``' slices now and keep their outputs (``SliceOutputs``), so that scoring them
        later needs no model pass; how many slices went to the model (0: all were kept already)."""
        before = self.outputs.passed_slices
        self._run(series)
        return self.outputs.passed_slices - before

    def _run(self, series: SeriesInput) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The model's outputs for the series' crops (slices kept from earlier passes are not passed), and
        the slice each crop was cut from."""
        crops, positions = prepare(series.slices, series.layout.modality, self.card)
        prompt = np.tile(prompt_indices(series.prompt, self.card), (len(crops), 1))
        owner = np.array([p.slice for p in positions], dtype=np.int64)
        return self.outputs.run(self._backend.infer, crops, prompt, owner, self._batch_ok), owner

    def _batch_ok(self, n: int) -> bool:
        limits = self._backend.batch_range  # an engine's optimization profile
        return limits is None or limits[0] <= n <= limits[1]

    def _explain_dose(self, series: SeriesInput, model_dose: float, explanations: dict[str, str]) -> None:
        """The dose words against the reference of this series' anatomy and kernel (``dose_reference``)."""
        explanations.pop("ct_dose", None)
        ref = reference_for(series.prompt)
        fraction = dose_vs_reference(model_dose, ref)
        info: Mapping[str, Any] = self.card.head_info.get("ct_dose", {})
        if fraction > 0 and _notable("ct_dose", math.log2(fraction), info):
            spacing = series.layout.pixel_spacing
            noise = measured_noise_hu(series.slices, float(spacing[0]) if spacing else None)
            explanations["ct_dose"] = describe_dose(fraction, ref, noise, series.layout.first.slice_thickness)

    def _heads(self, physics: np.ndarray, modality: str) -> tuple[dict[str, float], dict[str, str]]:
        measures: dict[str, float] = {}
        explanations: dict[str, str] = {}
        for j, name in enumerate(self.card.heads):
            info: Mapping[str, Any] = self.card.head_info.get(name, {})
            if info.get("modality") not in (None, modality) or j >= physics.shape[1]:
                continue
            target = float(np.mean(physics[:, j]))
            value = 2.0 ** target if info.get("transform") == "log2" else target
            measures[name] = value
            if _notable(name, target, info):
                explanations[name] = HEAD_WORDS.get(name, name + " {v:.3g}").format(v=value)
        return measures, explanations

    def set_contended(self, contended: bool) -> None:
        self._backend.set_contended(contended)

    def prepare_spare(self) -> None:
        self._backend.prepare_spare()

    def release_spare(self) -> None:
        self._backend.release_spare()

    def close(self) -> None:
        self.outputs.clear()
        self._backend.close()


def _notable(name: str, target: float, info: Mapping[str, Any]) -> bool:
    """Is this head's estimate far enough from 'nothing wrong' to be worth saying?"""
    if name == "mr_snr":
        return 2.0 ** target < LOW_SNR
    lo, hi = (info.get("range") or (0.0, 1.0))[:2]
    neutral = info.get("neutral")
    if neutral is None:
        return False
    neutral_t = math.log2(neutral) if info.get("transform") == "log2" and neutral > 0 else float(neutral)
    span = abs(hi - lo) or 1.0
    return abs(target - neutral_t) / span >= NOTABLE_FRACTION
