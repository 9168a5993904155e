"""One series from layout to result: choose slices, decode only those, score, aggregate, decide.

Shared by every scorer, so the classical baseline and the learned model are judged the same way.
Series score = importance-weighted mean of slice scores; the worst slice and its position are
reported too, because motion or artefacts often hit only part of a volume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np

from mediqa.agent.config import AgentConfig
from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.scoring.base import Scorer, SeriesInput, SeriesResult, WorstSlice
from mediqa.agent.scoring.decision import decide
from mediqa.agent.select.prompts import prompt_for
from mediqa.agent.select.saliency import select_slices

log = logging.getLogger(__name__)


def score_layout(layout: SeriesLayout, scorer: Scorer, config: AgentConfig,
                 saliency: np.ndarray | None = None) -> SeriesResult:
    started = time.perf_counter()
    selection = select_slices(layout, k=config.scoring.slices, method=config.scoring.selection, saliency=saliency)
    slices = layout.read_slices(selection.indices)
    prompt = prompt_for(layout)
    raw = scorer.score(SeriesInput(layout=layout, selection=selection, slices=slices, prompt=prompt))
    scores = np.asarray(raw.scores, dtype=np.float64)
    weights = np.asarray(selection.weights, dtype=np.float64)
    known = np.isfinite(scores)
    series_score = float(np.sum(scores[known] * weights[known]) / np.sum(weights[known])) if known.any() else float(
        "nan")
    worst = None
    if known.any():
        k = int(np.nanargmin(np.where(known, scores, np.nan)))
        idx = selection.indices[k]
        worst = WorstSlice(index=idx, position_mm=layout.slices[idx].position, score=float(scores[k]), rank=idx + 1)
    where = f"slice {worst.rank}/{layout.n_slices} ({worst.position_mm:.1f} mm)" if worst else ""
    attributes = _attributes(layout, prompt)
    verdict = decide(series_score, worst.score if worst else None, where, config.thresholds, attributes,
                     raw.explanations)
    first = layout.first
    return SeriesResult(
        series_uid=layout.series_uid, series_key=layout.series_key, modality=layout.modality,
        series_number=first.series_number, series_description=first.series_description,
        n_instances=len(layout.records), n_slices=layout.n_slices, score=series_score,
        decision=verdict.decision, reasons=verdict.reasons, worst=worst, slice_scores=tuple(scores.tolist()),
        selection=selection, prompt=prompt, measures=dict(raw.measures), scorer=scorer.name,
        backend=scorer.backend, threshold=verdict.threshold,
        processing_ms=(time.perf_counter() - started) * 1000.0, warnings=layout.warnings,
    )


def _attributes(layout: SeriesLayout, prompt: Mapping[str, str]) -> dict[str, str]:
    first = layout.first
    return {
        "modality": layout.modality, "series_description": first.series_description,
        "protocol_name": first.protocol_name, "body_part": first.body_part, "manufacturer": first.manufacturer,
        **{f"prompt_{k}": v for k, v in prompt.items()}, **dict(prompt),
    }
