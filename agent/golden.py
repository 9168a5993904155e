"""Build the engines' golden set from real DICOM series: clean, plus degraded copies of the same slices.

The application side of the accuracy gate: it reads DICOM, so it lives with the agent, not in
``engines/`` (a library that knows nothing of DICOM). It uses the agent's own wiring
(``pipeline.series_input``: plan -> select -> read -> prompt) and the contract's ``prepare``, so the gate
runs on exactly what the agent feeds the model; there is no second DICOM reader here.
Degradations are added in physical units before preprocessing: white Gaussian noise in
HU for CT, Rician noise (magnitude of complex Gaussian) for MR. They need not be faithful physics
(see training/degrade for that): they only have to push scores across the retake threshold so the
gate sees both decisions.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.agent.pipeline import series_input
from mediqa.engines.gate.golden import GoldenSet, golden_from_inputs
from mediqa.errors import MediqaError, ModelError
from mediqa.model_card import ModelCard
from mediqa.preprocess import prepare, prompt_indices

logger = logging.getLogger(__name__)

# (label, CT noise sigma in HU, MR noise sigma as a fraction of the 99th percentile)
DEGRADATIONS: tuple[tuple[str, float, float], ...] = (("noise-mild", 30.0, 0.04), ("noise-strong", 90.0, 0.12))


def build_golden_from_dicom(root: Path, card: ModelCard | None, *, slices: int = 7, max_series: int = 6, seed: int = 0,
                            degradations: tuple[tuple[str, float, float], ...] = DEGRADATIONS) -> GoldenSet:

    if card is None:
        raise ModelError("the model has no model card: cannot prepare golden inputs", "re-export the model")
    rng = np.random.default_rng(seed)
    layouts = []
    for uid, records in sorted(scan_tree(root).items()):
        try:
            layout = plan_series(records)
        except MediqaError as exc:
            logger.debug("golden: skip series %s: %s", uid, exc)
            continue
        if layout.modality in ("CT", "MR"):
            layouts.append(layout)
    cases = []
    for layout in _spread(layouts, max_series):
        try:
            inputs = series_input(layout, slices=slices, vocabulary=card.vocabulary)
            stack = inputs.slices
            prompt = prompt_indices(inputs.prompt, card)
            clean, positions = prepare(stack, layout.modality, card)
        except (MediqaError, ValueError) as exc:
            logger.info("golden: skip series %s: %s", layout.series_key, exc)
            continue
        prompts = np.tile(prompt, (clean.shape[0], 1))
        name = f"{layout.modality.lower()}-{_slug(layout.series_key)}"
        cases.append((f"{name}/clean", {"image": clean, "prompt": prompts}, "clean"))
        for label, ct_sigma, mr_fraction in degradations:
            noisy = _degrade(stack, layout.modality, ct_sigma, mr_fraction, rng)
            image, _ = prepare(noisy, layout.modality, card, positions=positions)
            cases.append((f"{name}/{label}", {"image": image, "prompt": prompts}, f"degraded/{label}"))
    if not cases:
        raise ModelError(f"no usable CT/MR series under {root} for a golden set", "point --golden-dicom at real series")
    return golden_from_inputs(cases, {"source": f"dicom:{root}", "series": len(cases) // (1 + len(degradations)),
                                      "slices": slices, "seed": seed, "degradations": [d[0] for d in degradations],
                                      "card": f"{card.name} {card.version}"})


def _spread(layouts: list[SeriesLayout], limit: int) -> list[SeriesLayout]:
    """Round-robin over modalities so CT and MR both appear when both exist."""
    by_modality: dict[str, list[SeriesLayout]] = defaultdict(list)
    for layout in layouts:
        by_modality[layout.modality].append(layout)
    picked: list[SeriesLayout] = []
    while len(picked) < limit and any(by_modality.values()):
        for modality in sorted(by_modality):
            if by_modality[modality] and len(picked) < limit:
                picked.append(by_modality[modality].pop(0))
    return picked


def _degrade(stack: np.ndarray, modality: str, ct_sigma: float, mr_fraction: float,
             rng: np.random.Generator) -> np.ndarray:
    x = np.asarray(stack, dtype=np.float32)
    if modality == "CT":
        return x + rng.normal(0.0, ct_sigma, x.shape).astype(np.float32)
    sigma = mr_fraction * float(np.percentile(x, 99)) or mr_fraction
    real = x + rng.normal(0.0, sigma, x.shape)
    imag = rng.normal(0.0, sigma, x.shape)
    return np.sqrt(real ** 2 + imag ** 2).astype(np.float32)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)[-40:].strip("-") or "series"
