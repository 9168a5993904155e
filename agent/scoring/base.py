"""The scorer interface: a series (its chosen slices + metadata) in, per-slice scores out.

Scorers only judge slices. Choosing slices, aggregating to a series score and deciding
ok / retake are shared (``mediqa.agent.pipeline``), so every scorer (the classical
baseline, the learned ONNX model, a TensorRT engine) is compared on the same footing.
Scores use one scale everywhere: 0 (bad) .. 4 (excellent), higher is better.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.select.selection import Selection

SCORE_MIN, SCORE_MAX = 0.0, 4.0


@dataclass(frozen=True)
class SeriesInput:
    layout: SeriesLayout
    selection: Selection
    slices: np.ndarray  # float32 [K, H, W] in physical units (HU for CT), K = len(selection.indices)
    prompt: Mapping[str, str]  # dimension, modality, anatomy, image_type (values or "unknown")


@dataclass(frozen=True)
class SliceScores:
    """What a scorer returns: one score per selected slice, plus named measures that explain it."""

    scores: tuple[float, ...]
    measures: Mapping[str, float] = field(default_factory=dict)  # series-level, e.g. noise_hu, snr
    slice_measures: tuple[Mapping[str, float], ...] = ()  # per slice, same order as scores
    explanations: Mapping[str, str] = field(default_factory=dict)  # measure -> plain words for the alert


class Scorer(Protocol):
    name: str
    backend: str

    def score(self, series: SeriesInput) -> SliceScores: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class WorstSlice:
    index: int  # into layout.slices
    position_mm: float
    score: float
    rank: int  # 1-based position among the layout's slices, in anatomical order


@dataclass(frozen=True)
class SeriesResult:
    """The answer for one series. Identifiers are kept for the database, never logged."""

    series_uid: str
    series_key: str
    modality: str
    series_number: int | None
    series_description: str
    n_instances: int
    n_slices: int
    score: float
    decision: str  # "ok", "retake", or "unscored" (could not be measured)
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

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form (``mediqa score --json``, results.jsonl)."""
        return {
            "series_uid": self.series_uid,
            "series_key": self.series_key,
            "modality": self.modality,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "instances": self.n_instances,
            "slices": self.n_slices,
            "score": round(self.score, 3),
            "decision": self.decision,
            "reasons": list(self.reasons),
            "worst_slice": None if self.worst is None else {
                "index": self.worst.index, "position_mm": round(self.worst.position_mm, 2),
                "score": round(self.worst.score, 3), "rank": self.worst.rank},
            "slice_scores": [round(s, 3) for s in self.slice_scores],
            "selected_slices": list(self.selection.indices),
            "slice_weights": [round(w, 4) for w in self.selection.weights],
            "selection_method": self.selection.method,
            "prompt": dict(self.prompt),
            "measures": {k: round(float(v), 4) for k, v in self.measures.items()},
            "scorer": self.scorer,
            "backend": self.backend,
            "threshold": dict(self.threshold),
            "processing_ms": round(self.processing_ms, 1),
            "warnings": list(self.warnings),
        }
