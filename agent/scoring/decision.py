"""ok / retake: the series score and its worst slice against thresholds from config.

Thresholds come per modality and can be overridden per protocol by a rule whose regexes all match
the series' attributes (modality, series_description, protocol_name, body_part, manufacturer and
the prompt attributes), so a site can make diffusion series more tolerant without code changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mediqa.agent.config import Threshold, ThresholdConfig


@dataclass(frozen=True)
class Decision:
    decision: str  # ok, retake, or unscored (could not be measured: never reported as good)
    reasons: tuple[str, ...]
    threshold: Mapping[str, Any]


def threshold_for(cfg: ThresholdConfig, attributes: Mapping[str, str]) -> tuple[Threshold, str]:
    base = cfg.modality.get(attributes.get("modality", ""), cfg.default)
    source = f"modality {attributes.get('modality')}" if attributes.get("modality") in cfg.modality else "default"
    for i, rule in enumerate(cfg.rules):
        if all(re.search(pattern, str(attributes.get(key, ""))) for key, pattern in rule.match.items()):
            base = Threshold(
                retake_below=rule.retake_below if rule.retake_below is not None else base.retake_below,
                worst_slice_below=(rule.worst_slice_below if rule.worst_slice_below is not None
                                   else base.worst_slice_below),
            )
            source = f"rule {rule.name or i}"
            break
    return base, source


def decide(score: float, worst: float | None, worst_where: str, cfg: ThresholdConfig,
           attributes: Mapping[str, str], explanations: Mapping[str, str]) -> Decision:
    """Retake when the series score, or its worst slice, is below threshold; reasons say why and where."""
    threshold, source = threshold_for(cfg, attributes)
    limits = {"retake_below": threshold.retake_below, "worst_slice_below": threshold.worst_slice_below,
              "source": source}
    if math.isnan(score):
        # Never call a series good because it could not be measured.
        return Decision("unscored", ("quality could not be assessed on this series",), limits)
    reasons: list[str] = []
    if score < threshold.retake_below:
        reasons.append(f"score {score:.2f} < {threshold.retake_below:.2f}")
    if threshold.worst_slice_below is not None and worst is not None and worst < threshold.worst_slice_below:
        reasons.append(f"{worst_where} scores {worst:.2f} < {threshold.worst_slice_below:.2f}")
    decision = "retake" if reasons else "ok"
    if reasons:  # what is wrong first (noise, motion...), then which limit it broke
        reasons = [*explanations.values(), *reasons]
    return Decision(decision, tuple(reasons), limits)
