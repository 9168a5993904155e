from __future__ import annotations

import math

from mediqa.agent.config import config_from_dict
from mediqa.agent.scoring.decision import decide


def _thresholds(**raw):
    return config_from_dict({"thresholds": raw}).thresholds


def test_modality_threshold_and_worst_slice():
    t = _thresholds(default={"retake_below": 2.0}, modality={"CT": {"retake_below": 2.5, "worst_slice_below": 1.0}})
    assert decide(2.4, 2.4, "slice 3/10", t, {"modality": "CT"}, {}).decision == "retake"
    assert decide(2.4, 2.4, "slice 3/10", t, {"modality": "MR"}, {}).decision == "ok"
    worst = decide(3.5, 0.5, "slice 3/10 (12.0 mm)", t, {"modality": "CT"}, {"noise_hu": "image noise 30 HU"})
    assert worst.decision == "retake"
    assert worst.reasons[0] == "image noise 30 HU"  # what is wrong comes first
    assert any("slice 3/10 (12.0 mm)" in r for r in worst.reasons)


def test_protocol_rule_overrides_modality():
    t = _thresholds(default={"retake_below": 2.0},
                    rules=[{"name": "diffusion", "match": {"modality": "MR", "series_description": "(?i)dwi|diff"},
                            "retake_below": 1.0}])
    dwi = decide(1.5, 1.5, "", t, {"modality": "MR", "series_description": "Ax DWI TENSOR"}, {})
    t1 = decide(1.5, 1.5, "", t, {"modality": "MR", "series_description": "t1_fl2d_sag"}, {})
    assert (dwi.decision, dwi.threshold["source"]) == ("ok", "rule diffusion")
    assert t1.decision == "retake"


def test_unmeasurable_is_never_ok():
    d = decide(math.nan, None, "", _thresholds(), {"modality": "CT"}, {})
    assert d.decision == "unscored"
