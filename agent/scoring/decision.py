"""ok / retake: the series score and its worst slice against thresholds from config.

Thresholds come per modality and can be overridden per protocol by a rule whose regexes all match
the series' attributes (modality, series_description, protocol_name, body_part, manufacturer and
the prompt attributes), so a site can make diffusion series more tolerant without code changes.

A reviewed thresholds file (``thresholds.reviewed_file``, written by ``mediqa calibrate``) sets
``retake_below`` per protocol and per modality from the site's own feedback. Most specific first: its
protocol entry, then a config rule, then its modality entry, then the config's modality and default. The
worst-slice limit always comes from the config (calibration is on the series score). The result's
``threshold`` says which one applied, with the protocol key and the file's digest.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mediqa.agent.config import Threshold, ThresholdConfig
from mediqa.agent.config_thresholds import protocol_key


@dataclass(frozen=True)
class Decision:
    decision: str  # ok, retake, or unscored (could not be measured: never reported as good)
    reasons: tuple[str, ...]
    threshold: Mapping[str, Any]


def threshold_for(cfg: ThresholdConfig, attributes: Mapping[str, str]) -> tuple[Threshold, str]:
    base, source = _configured(cfg, attributes)
    reviewed = cfg.reviewed
    if reviewed is None:
        return base, source
    modality = attributes.get("modality", "")
    key = protocol_key(modality, attributes.get("series_description", ""), attributes.get("anatomy", ""))
    entry, level = reviewed.protocols.get(key), f"protocol {key}"
    if entry is None and not source.startswith("rule "):  # a hand-written rule is more specific than a modality
        entry, level = reviewed.modality.get(modality), f"modality {modality}"
    if entry is None:
        return base, source
    return dataclasses.replace(base, retake_below=entry.retake_below), f"reviewed {level}"


def _configured(cfg: ThresholdConfig, attributes: Mapping[str, str]) -> tuple[Threshold, str]:
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
    limits: dict[str, Any] = {"retake_below": threshold.retake_below,
                              "worst_slice_below": threshold.worst_slice_below, "source": source}
    if cfg.reviewed is not None:  # which file was in force, and the protocol key it is looked up by
        limits.update(protocol=protocol_key(attributes.get("modality", ""), attributes.get("series_description", ""),
                                            attributes.get("anatomy", "")),
                      reviewed_file=cfg.reviewed_file, reviewed_digest=cfg.reviewed.digest)
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
