"""The scorer interface: a series (its chosen slices + metadata) in, per-slice scores out.

Scorers only judge slices. Choosing slices, aggregating to a series score and deciding
ok / retake are shared (``mediqa.agent.pipeline``), so every scorer (the classical
baseline, the learned ONNX model, a TensorRT engine) is compared on the same footing.
Scores use one scale everywhere: 0 (bad) .. 4 (excellent), higher is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mediqa import __version__ as AGENT_VERSION
from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.select.selection import Selection

SCORE_MIN, SCORE_MAX = 0.0, 4.0


@dataclass(frozen=True)
class SeriesInput:
    layout: SeriesLayout
    selection: Selection
    slices: np.ndarray  # float32 [K, H, W] in physical units (HU for CT), K = len(selection.indices)
    prompt: Mapping[str, str]  # dimension, modality, anatomy, image_type (values or "unknown")
    notices: tuple[str, ...] = ()  # what the result must say about how its slices were read


@dataclass(frozen=True)
class SliceScores:
    """What a scorer returns: one score per selected slice, plus named measures that explain it."""

    scores: tuple[float, ...]
    measures: Mapping[str, float] = field(default_factory=dict)  # series-level, e.g. noise_hu, snr
    slice_measures: tuple[Mapping[str, float], ...] = ()  # per slice, same order as scores
    explanations: Mapping[str, str] = field(default_factory=dict)  # measure -> plain words for the alert


@dataclass(frozen=True)
class Provenance:
    """Which model and which agent produce a scorer's results, recorded with every result.

    ``model_sha256`` is the SHA-256 of the model file as loaded (None when there is no model file: the
    classical scorer); name and version come from the model card (the classical scorer: its own name).
    """

    model_name: str
    model_version: str
    model_sha256: str | None
    agent_version: str = AGENT_VERSION


class Scorer(Protocol):
    name: str
    backend: str

    def score(self, series: SeriesInput) -> SliceScores: ...

    def close(self) -> None: ...


def provenance_fields(scorer: object) -> dict[str, Any]:
    """The ``SeriesResult`` provenance fields for results of ``scorer`` (its ``provenance`` when it has one:
    a scorer without one is named by its ``name`` and has no model hash)."""
    p = getattr(scorer, "provenance", None)
    if not isinstance(p, Provenance):
        p = Provenance(str(getattr(scorer, "name", "") or ""), "", None)
    return {"model_name": p.model_name, "model_version": p.model_version, "model_sha256": p.model_sha256,
            "agent_version": p.agent_version}


@dataclass(frozen=True)
class WorstSlice:
    index: int  # into layout.slices
    position_mm: float
    score: float
    rank: int  # 1-based position among the layout's slices, in anatomical order


DECISIONS = ("ok", "retake", "unscored", "skipped")


@dataclass(frozen=True)
class SeriesResult:
    """The answer for one series. Identifiers are kept for the database, never logged.

    ``decision`` is ``ok`` or ``retake`` (measured), ``unscored`` (complete, but it could not be
    measured: ``reasons`` says why, ``score`` is NaN) or ``skipped`` (every file was skipped on purpose:
    a localizer, derived images; ``reasons`` says which). ``notices`` are what the technologist must
    know besides the verdict ("27 of 28 images could be read"); they are shown on the console line.
    ``shown_late`` is presentation only (a line printed after a restart) and is not stored.
    ``model_*`` and ``agent_version`` say what produced it (``provenance_fields(scorer)``); a result read
    back from a line written before they existed has them empty (``model_sha256`` None).
    """

    series_uid: str
    series_key: str
    modality: str
    series_number: int | None
    series_description: str
    n_instances: int
    n_slices: int
    score: float
    decision: str  # one of DECISIONS
    reasons: tuple[str, ...]
    worst: WorstSlice | None
    slice_scores: tuple[float, ...]
    selection: Selection
    prompt: Mapping[str, str]
    measures: Mapping[str, float]
    scorer: str
    backend: str
    threshold: Mapping[str, Any]
    processing_ms: float
    warnings: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    shown_late: bool = False
    model_name: str = ""
    model_version: str = ""
    model_sha256: str | None = None
    agent_version: str = AGENT_VERSION

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (``mediqa score --json``, results.jsonl). A NaN (unscored) is ``null``."""
        return {
            "series_uid": self.series_uid,
            "series_key": self.series_key,
            "modality": self.modality,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "instances": self.n_instances,
            "slices": self.n_slices,
            "score": _num(self.score, 3),
            "decision": self.decision,
            "reasons": list(self.reasons),
            "worst_slice": None if self.worst is None else {
                "index": self.worst.index, "position_mm": _num(self.worst.position_mm, 2),
                "score": _num(self.worst.score, 3), "rank": self.worst.rank},
            "slice_scores": [_num(s, 3) for s in self.slice_scores],
            "selected_slices": list(self.selection.indices),
            "slice_weights": [round(w, 4) for w in self.selection.weights],
            "selection_method": self.selection.method,
            "prompt": dict(self.prompt),
            "measures": {k: _num(float(v), 4) for k, v in self.measures.items()},
            "scorer": self.scorer,
            "backend": self.backend,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_sha256": self.model_sha256,
            "agent_version": self.agent_version,
            "threshold": dict(self.threshold),
            "processing_ms": round(self.processing_ms, 1),
            "warnings": list(self.warnings),
            "notices": list(self.notices),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SeriesResult:
        """Inverse of ``to_json`` (as far as it goes: rounded values, a null score back to NaN)."""
        worst = data.get("worst_slice")
        return cls(
            series_uid=str(data.get("series_uid", "")), series_key=str(data.get("series_key", "")),
            modality=str(data.get("modality") or ""), series_number=data.get("series_number"),
            series_description=str(data.get("series_description") or ""),
            n_instances=int(data.get("instances") or 0), n_slices=int(data.get("slices") or 0),
            score=_float(data.get("score")), decision=str(data.get("decision", "unscored")),
            reasons=tuple(data.get("reasons") or ()),
            worst=None if not worst else WorstSlice(index=int(worst["index"]), position_mm=_float(worst["position_mm"]),
                                                   score=_float(worst["score"]), rank=int(worst["rank"])),
            slice_scores=tuple(_float(s) for s in data.get("slice_scores") or ()),
            selection=Selection(indices=tuple(data.get("selected_slices") or ()),
                                weights=tuple(data.get("slice_weights") or ()),
                                method=str(data.get("selection_method", "salient"))),
            prompt=dict(data.get("prompt") or {}),
            measures={k: _float(v) for k, v in (data.get("measures") or {}).items()},
            scorer=str(data.get("scorer", "")), backend=str(data.get("backend", "")),
            threshold=dict(data.get("threshold") or {}), processing_ms=float(data.get("processing_ms") or 0.0),
            warnings=tuple(data.get("warnings") or ()), notices=tuple(data.get("notices") or ()),
            model_name=str(data.get("model_name") or ""), model_version=str(data.get("model_version") or ""),
            model_sha256=str(data["model_sha256"]) if data.get("model_sha256") else None,
            agent_version=str(data.get("agent_version") or ""),
        )


def _num(value: float, digits: int) -> float | None:
    """A rounded number for JSON, or None for NaN/inf (JSON has no NaN)."""
    return round(value, digits) if math.isfinite(value) else None


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)
