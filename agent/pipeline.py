"""The one wiring of the chain: records -> plan -> select -> read -> prompt -> score -> aggregate -> decide.

The service, ``mediqa score`` and the engines' golden-set builder all come through here, so the slices
a scorer judges are chosen, decoded and prompted the same way everywhere. Stages do not call each
other sideways: each is a function of the stage folders (``dicom/``, ``select/``, ``scoring/``), and
only this module composes them.

Series score = importance-weighted mean of slice scores; the worst slice and its position are
reported too, because motion or artefacts often hit only part of a volume.

A chosen slice that cannot be decoded (a damaged file, one gone since it was indexed) does not sink the
series: it is scored on the slices that could be read, and its result says how many could not
(``notices``). When a series cannot be measured at all, ``unscored_result`` is its one result all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from mediqa.agent.config import AgentConfig
from mediqa.agent.dicom.decode import SliceKey
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.agent.report.privacy import clean_text
from mediqa.agent.scoring.base import SCORE_MIN, Scorer, SeriesInput, SeriesResult, WorstSlice, provenance_fields
from mediqa.agent.scoring.content import Content, check_content
from mediqa.agent.scoring.decision import decide
from mediqa.agent.select.predict import likely_chosen
from mediqa.agent.select.prompts import prompt_for
from mediqa.agent.select.saliency import saliency_from_store, select_slices
from mediqa.agent.select.selection import Selection
from mediqa.agent.select.skips import split_for_scoring
from mediqa.errors import SeriesError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysis:
    """A scored series: its layout (for thumbnails and explanations) and its result."""

    layout: SeriesLayout
    result: SeriesResult


def series_input(layout: SeriesLayout, *, slices: int, selection: str = "salient",
                 stored_saliency: Mapping[SliceKey, float] | None = None,
                 vocabulary: Mapping[str, tuple[str, ...]] | None = None) -> SeriesInput:
    """What a scorer sees: the chosen slices, decoded (only those) in physical units, and the prompt.

    ``stored_saliency`` holds values computed as instances arrived; slices it lacks are computed here.
    Slices that cannot be decoded are left out (``notices`` says how many); none readable is a ``SeriesError``.
    """
    notices: list[str] = []
    try:
        saliency = None
        if selection == "salient" and stored_saliency is not None:
            saliency = saliency_from_store(layout, stored_saliency)
        chosen = select_slices(layout, k=slices, method=selection, saliency=saliency)
    except Exception as exc:
        if selection != "salient":
            raise
        log.info("series %s: salient selection failed (%s): fixed slices", layout.series_key, type(exc).__name__)
        chosen = select_slices(layout, k=slices, method="fixed")
    part = layout.read_partial(chosen.indices)
    if not part.indices:
        raise SeriesError(part.error_message("chosen slices could not be read") or "no slice could be read")
    if part.failed:  # scored on the slices that could be read, and the result says so
        weights = dict(zip(chosen.indices, chosen.weights, strict=True))
        kept = [weights[i] for i in part.indices]
        total = sum(kept)
        chosen = replace(chosen, indices=part.indices,
                         weights=tuple(w / total for w in kept) if total > 0 else tuple(1.0 / len(kept) for _ in kept))
        notices.append(clean_text(part.error_message("scored slices could not be decoded"), 200))
    return SeriesInput(layout=layout, selection=chosen, slices=part.pixels,
                       prompt=prompt_for(layout, vocabulary=vocabulary), notices=tuple(notices))


def analyse_series(records: Sequence[InstanceRecord] | SeriesLayout, scorer: Scorer, config: AgentConfig, *,
                   stored_saliency: Mapping[SliceKey, float] | None = None) -> Analysis:
    """Score one series end to end. Raises ``MediqaError`` subclasses when it cannot be measured."""
    started = time.perf_counter()
    given = records.records if isinstance(records, SeriesLayout) else tuple(records)
    kept, skip, left_out = split_for_scoring(given, skip_kinds(config))
    if skip is not None:  # a localizer, phase images, a parametric map: said so, never silently dropped
        layout = records if isinstance(records, SeriesLayout) else plan_series(given)
        return Analysis(layout, unscored_result(given, [skip.reason], scorer=scorer, decision="skipped",
                                                processing_ms=(time.perf_counter() - started) * 1000.0))
    layout = records if isinstance(records, SeriesLayout) and len(kept) == len(given) else plan_series(kept)
    inputs = series_input(layout, slices=config.scoring.slices, selection=config.scoring.selection,
                          stored_saliency=stored_saliency)
    if left_out:
        inputs = replace(inputs, notices=(*left_out, *inputs.notices))
    # Before either scorer: a model trained on patients has no opinion about an image without one.
    content = check_content(inputs.slices, layout.modality)
    if content.kind != "ok":
        return Analysis(layout, _no_content_result(layout, inputs, content, scorer, started))
    raw = scorer.score(inputs)
    selection = inputs.selection
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
    attributes = _attributes(layout, inputs.prompt)
    verdict = decide(series_score, worst.score if worst else None, where, config.thresholds, attributes,
                     raw.explanations)
    first = layout.first
    result = SeriesResult(
        series_uid=layout.series_uid, series_key=layout.series_key, modality=layout.modality,
        series_number=first.series_number, series_description=first.series_description,
        n_instances=len(layout.records), n_slices=layout.n_slices, score=series_score,
        decision=verdict.decision, reasons=verdict.reasons, worst=worst, slice_scores=tuple(scores.tolist()),
        selection=selection, prompt=inputs.prompt, measures=dict(raw.measures), scorer=scorer.name,
        backend=scorer.backend, threshold=verdict.threshold,
        processing_ms=(time.perf_counter() - started) * 1000.0, warnings=layout.warnings,
        notices=inputs.notices, **provenance_fields(scorer),
    )
    return Analysis(layout, result)


def early_input(records: Sequence[InstanceRecord], expected: int, config: AgentConfig, *,
                stored_saliency: Mapping[SliceKey, float] | None = None) -> SeriesInput | None:
    """The input a series that announced ``expected`` slices will likely be scored with, from the slices
    arrived so far (``select.predict``): for a model pass before its last file (``loop/early.py``). None
    when there is nothing to predict (a skipped kind, a 4D or multi-frame series, an order that gives no
    prediction). Planned, read and prompted as ``analyse_series`` does, so a slice that is chosen in the
    end is fed to the model exactly as it will be then.
    """
    kept, skip, _ = split_for_scoring(records, skip_kinds(config))
    if skip is not None or len(kept) < 2:
        return None
    layout = plan_series(kept)
    if layout.time_points > 1:
        return None
    chosen = likely_chosen(layout, expected, config.scoring.slices, config.scoring.selection, stored_saliency)
    if not chosen:
        return None
    part = layout.read_partial(chosen)
    if not part.indices:
        return None
    weights = tuple(1.0 / len(part.indices) for _ in part.indices)
    return SeriesInput(layout=layout, selection=Selection(indices=part.indices, weights=weights, method="predicted"),
                       slices=part.pixels, prompt=prompt_for(layout))


def skip_kinds(config: AgentConfig) -> tuple[str, ...]:
    """The series kinds not scored; ``ingest.skip_localizers: false`` also scores localizers found by name."""
    kinds = config.ingest.skip_kinds
    return tuple(k for k in kinds if k != "localizer" or config.ingest.skip_localizers)


def _no_content_result(layout: SeriesLayout, inputs: SeriesInput, content: Content, scorer: Scorer,
                       started: float) -> SeriesResult:
    """Nothing to assess: no anatomy is ``unscored`` (not the technologist's image to judge); pure noise is a
    RETAKE at the bottom of the scale, whatever a scorer would have said (it is not run)."""
    empty = content.kind == "empty"
    k = len(inputs.selection.indices)
    first = layout.first
    return SeriesResult(
        series_uid=layout.series_uid, series_key=layout.series_key, modality=layout.modality,
        series_number=first.series_number, series_description=first.series_description,
        n_instances=len(layout.records), n_slices=layout.n_slices, score=float("nan") if empty else SCORE_MIN,
        decision="unscored" if empty else "retake", reasons=(content.reason,), worst=None,
        slice_scores=(float("nan"),) * k if empty else (SCORE_MIN,) * k, selection=inputs.selection,
        prompt=inputs.prompt, measures={"content_anatomy": content.anatomy, "content_structure": content.structure},
        scorer=scorer.name, backend=scorer.backend, threshold={"source": "content check"},
        processing_ms=(time.perf_counter() - started) * 1000.0, warnings=layout.warnings, notices=inputs.notices,
        **provenance_fields(scorer),
    )


def unscored_result(records: Sequence[InstanceRecord], reasons: Sequence[str], *, scorer: Scorer | None = None,
                    decision: str = "unscored", series_uid: str = "", series_key: str = "", modality: str = "",
                    notices: Sequence[str] = (), processing_ms: float = 0.0) -> SeriesResult:
    """The one result of a complete series that could not be measured (``unscored``) or was skipped on
    purpose (``skipped``), built from what its headers say (a series with no readable file: its uid)."""
    first = min(records, key=lambda r: (r.instance_number or 0, r.path)) if records else None
    uid = first.series_uid if first else series_uid
    return SeriesResult(
        series_uid=uid, series_key=first.series_key if first else (series_key or uid),
        modality=(first.modality if first else modality) or "", series_number=first.series_number if first else None,
        series_description=first.series_description if first else "",
        n_instances=len({r.sop_instance_uid for r in records}), n_slices=0, score=float("nan"), decision=decision,
        reasons=tuple(clean_text(r) for r in reasons), worst=None, slice_scores=(),
        selection=Selection(indices=(), weights=(), method="none"), prompt={}, measures={},
        scorer=scorer.name if scorer else "", backend=scorer.backend if scorer else "", threshold={},
        processing_ms=processing_ms, notices=tuple(notices), **(provenance_fields(scorer) if scorer else {}),
    )


def _attributes(layout: SeriesLayout, prompt: Mapping[str, str]) -> dict[str, str]:
    first = layout.first
    return {
        "modality": layout.modality, "series_description": first.series_description,
        "protocol_name": first.protocol_name, "body_part": first.body_part, "manufacturer": first.manufacturer,
        **{f"prompt_{k}": v for k, v in prompt.items()}, **dict(prompt),
    }
