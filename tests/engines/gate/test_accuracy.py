"""Gate logic: pass, tolerance failure, decision flip (failing case named), NaN, threshold source."""

from __future__ import annotations

import numpy as np

from mediqa.engines.gate.accuracy import evaluate_gate, retake_threshold
from mediqa.engines.gate.golden import golden_from_inputs


def _golden(names):
    return golden_from_inputs([(n, {"x": np.zeros((3, 2), np.float32)}, g) for n, g in names], {"source": "test"})


GOLDEN = _golden([("ct-clean", "clean"), ("ct-borderline", "degraded"), ("mr-noisy", "degraded")])
REF = [{"quality": np.array([3.5, 3.4, 3.6])}, {"quality": np.array([2.05, 2.02, 2.04])},
       {"quality": np.array([0.5, 0.6, 0.4])}]


def _cand(deltas):
    return [{"quality": r["quality"] + d} for r, d in zip(REF, deltas, strict=True)]


def test_passes_within_tolerance_and_same_decisions():
    gate = evaluate_gate(REF, _cand([0.01, -0.02, 0.05]), GOLDEN, score_output="quality")
    assert gate.passed and not gate.failed_cases
    assert abs(gate.max_abs_diff - 0.05) < 1e-9
    assert "PASS" in gate.summary()


def test_tolerance_failure_names_the_case():
    gate = evaluate_gate(REF, _cand([0.0, 0.0, 0.3]), GOLDEN, score_output="quality", tolerance=0.1)
    assert not gate.passed
    assert [c.name for c in gate.failed_cases] == ["mr-noisy"]
    assert "mr-noisy" in gate.summary() and "0.3000 > 0.1" in gate.summary()


def test_decision_flip_fails_even_within_tolerance():
    gate = evaluate_gate(REF, _cand([0.0, -0.06, 0.0]), GOLDEN, score_output="quality", tolerance=0.1,
                         retake_below=2.0)
    assert not gate.passed
    [case] = gate.failed_cases
    assert case.name == "ct-borderline" and case.max_abs_diff < 0.1
    assert not case.reference_retake and case.candidate_retake
    assert "retake decision flips" in gate.summary() and "ct-borderline" in gate.summary()


def test_nan_or_missing_output_fails():
    cand = _cand([0.0, 0.0, 0.0])
    cand[0]["quality"] = np.array([np.nan, 3.4, 3.6])
    del cand[1]["quality"]
    gate = evaluate_gate(REF, cand, GOLDEN, score_output="quality")
    assert [c.name for c in gate.failed_cases] == ["ct-clean", "ct-borderline"]


def test_result_dict_lists_failures():
    data = evaluate_gate(REF, _cand([0.0, 0.0, 0.3]), GOLDEN, score_output="quality").to_dict()
    assert data["passed"] is False and data["failed"] == ["mr-noisy"] and data["golden"]["cases"] == 3


def test_threshold_from_card_else_default():
    class Card:
        thresholds = {"retake_below": 1.5}

    assert retake_threshold(Card()) == 1.5
    assert retake_threshold(None, 2.0) == 2.0
