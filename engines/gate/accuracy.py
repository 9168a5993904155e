"""Accuracy gate: candidate backend vs ONNX Runtime FP32 on the golden set.

A case passes when (1) every per-crop score is within ``tolerance`` of FP32 and (2) the series gets the
same retake decision. Why per crop: any aggregation the agent uses (mean, weighted mean, worst slice)
is a convex combination or an order statistic of crop scores, so it then moves by at most ``tolerance``
too. Why 0.1 on the 0-4 scale: it is 2.5 % of the range and a fifth of half a Likert step (the scale
experts score on), far below inter-rater spread (kappa ~0.5), yet ~10x above the FP16 rounding we
measure on ViT-style models; a larger gap means a broken engine, not rounding. A small mean error is
not enough: a case near the threshold that flips its decision changes what the technologist is told,
so decisions are compared case by case and any flip fails the gate (TensorRT has shipped silently
wrong FP32 results before).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mediqa.engines.gate.golden import GoldenSet

if TYPE_CHECKING:
    from mediqa.model_card import ModelCard

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.1
DEFAULT_RETAKE_BELOW = 2.0


class Inferrer(Protocol):
    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class CaseResult:
    name: str
    group: str
    reference_score: float
    candidate_score: float
    max_abs_diff: float  # over the per-crop scores of this case
    reference_retake: bool
    candidate_retake: bool
    passed: bool
    reason: str  # empty when passed

    def describe(self) -> str:
        return (f"{self.name}: FP32 {self.reference_score:.3f} ({_decision(self.reference_retake)}) vs "
                f"candidate {self.candidate_score:.3f} ({_decision(self.candidate_retake)}), "
                f"max |diff| {self.max_abs_diff:.4f}" + (f" - {self.reason}" if self.reason else ""))


@dataclass(frozen=True)
class GateResult:
    passed: bool
    candidate: str
    reference: str
    tolerance: float
    retake_below: float
    score_output: str
    cases: tuple[CaseResult, ...]
    other_outputs_max_abs_diff: dict[str, float]
    golden: dict[str, Any]

    @property
    def failed_cases(self) -> tuple[CaseResult, ...]:
        return tuple(c for c in self.cases if not c.passed)

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.cases), default=0.0)

    def summary(self) -> str:
        head = (f"{self.candidate} vs {self.reference} on {len(self.cases)} golden cases: "
                f"max |diff {self.score_output}| = {self.max_abs_diff:.4f} (tolerance {self.tolerance}), "
                f"retake below {self.retake_below}")
        if self.passed:
            return head + ", same decision on every case: PASS"
        failed = "; ".join(c.describe() for c in self.failed_cases)
        return head + f": FAIL on {len(self.failed_cases)} case(s): {failed}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_abs_diff"] = self.max_abs_diff
        data["failed"] = [c.name for c in self.failed_cases]
        return data


def _decision(retake: bool) -> str:
    return "retake" if retake else "ok"


def series_decision(scores: np.ndarray, retake_below: float) -> tuple[float, bool]:
    """Series score (mean of crop scores) and the retake decision the agent would make on it."""
    score = float(np.mean(scores))
    return score, score < retake_below


def compare_case(name: str, group: str, reference: np.ndarray, candidate: np.ndarray,
                 tolerance: float, retake_below: float) -> CaseResult:
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(-1)
    ref_score, ref_retake = series_decision(ref, retake_below)
    if ref.shape != cand.shape:
        return CaseResult(name, group, ref_score, float("nan"), float("inf"), ref_retake, ref_retake, False,
                          f"candidate returned {cand.shape[0]} scores, FP32 {ref.shape[0]}")
    if not np.all(np.isfinite(cand)):
        return CaseResult(name, group, ref_score, float("nan"), float("inf"), ref_retake, ref_retake, False,
                          "candidate returned NaN/inf (FP16 overflow?)")
    cand_score, cand_retake = series_decision(cand, retake_below)
    diff = float(np.max(np.abs(ref - cand))) if ref.size else 0.0
    reasons = []
    if diff > tolerance:
        reasons.append(f"score differs by {diff:.4f} > {tolerance}")
    if cand_retake != ref_retake:
        reasons.append("retake decision flips")
    return CaseResult(name, group, ref_score, cand_score, diff, ref_retake, cand_retake, not reasons,
                      "; ".join(reasons))


def evaluate_gate(reference_outputs: list[dict[str, np.ndarray]], candidate_outputs: list[dict[str, np.ndarray]],
                  golden: GoldenSet, *, score_output: str, tolerance: float = DEFAULT_TOLERANCE,
                  retake_below: float = DEFAULT_RETAKE_BELOW, candidate: str = "candidate",
                  reference: str = "onnxruntime-cpu fp32") -> GateResult:
    """Pure comparison of outputs already computed, case by case (testable without any backend)."""
    cases = []
    others: dict[str, float] = {}
    for case, ref, cand in zip(golden.cases, reference_outputs, candidate_outputs, strict=True):
        if score_output not in cand:
            cases.append(CaseResult(case.name, case.group, float("nan"), float("nan"), float("inf"),
                                    False, False, False, f"candidate has no '{score_output}' output"))
            continue
        cases.append(compare_case(case.name, case.group, ref[score_output], cand[score_output],
                                  tolerance, retake_below))
        for name, value in ref.items():
            if name != score_output and name in cand and np.shape(cand[name]) == np.shape(value):
                diff = float(np.max(np.abs(np.asarray(value, np.float64) - np.asarray(cand[name], np.float64)),
                                    initial=0.0))
                others[name] = max(others.get(name, 0.0), diff)
    passed = bool(cases) and all(c.passed for c in cases)
    result = GateResult(passed, candidate, reference, tolerance, retake_below, score_output, tuple(cases),
                        others, golden.describe())
    (logger.info if passed else logger.warning)("accuracy gate: %s", result.summary())
    return result


def run_gate(candidate: Inferrer, reference: Inferrer, golden: GoldenSet, *, score_output: str,
             tolerance: float = DEFAULT_TOLERANCE, retake_below: float = DEFAULT_RETAKE_BELOW,
             candidate_name: str = "candidate", reference_name: str = "onnxruntime-cpu fp32") -> GateResult:
    """Run both backends on every golden case, then :func:`evaluate_gate`."""
    ref_out = [reference.infer(case.inputs) for case in golden.cases]
    cand_out = [candidate.infer(case.inputs) for case in golden.cases]
    return evaluate_gate(ref_out, cand_out, golden, score_output=score_output, tolerance=tolerance,
                         retake_below=retake_below, candidate=candidate_name, reference=reference_name)


def retake_threshold(card: ModelCard | None, default: float = DEFAULT_RETAKE_BELOW) -> float:
    """``thresholds.retake_below`` from the model card, else the configured default."""
    thresholds = getattr(card, "thresholds", None) or {}
    value = thresholds.get("retake_below") if isinstance(thresholds, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float(default)
