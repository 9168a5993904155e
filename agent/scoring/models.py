"""Where models come from (the embedded default edge model, or a path from config), what identifies one
(its file's SHA-256) and the deploy gate: a model is run only if its card carries an evaluation that
reaches the card's own floor (``metrics.evaluation``, agent/models/MODEL_CARD.md), unless the
configuration says ``scoring.allow_unevaluated_model: true``, which is logged as a WARNING at every start.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from mediqa.errors import ConfigError, ModelError
from mediqa.model_card import ModelCard

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "edge-default.onnx"
EVALUATION_KEY = "evaluation"  # card.metrics[EVALUATION_KEY]: the evaluation block
OVERRIDE = "scoring.allow_unevaluated_model"


class ModelRefused(ConfigError, ModelError):
    """The deploy gate refused the configured model (a configuration error: ``mediqa watch`` exits 78)."""


def default_model_path() -> Path:
    """The edge model shipped inside the package (agent/models/edge-default.onnx)."""
    path = Path(str(resources.files("mediqa.agent").joinpath("models").joinpath(DEFAULT_MODEL_NAME)))
    if not path.is_file():
        raise ModelError(f"the embedded default model {path} is missing",
                         "reinstall mediqa, set scoring.model to an exported .onnx, or use --scorer classical")
    return path


def resolve_model(setting: str) -> Path:
    """``"default"`` -> the embedded model; anything else is a path to an exported ONNX file."""
    if setting == "default":
        return default_model_path()
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "check scoring.model or export one with "
                                                              "`mediqa export onnx CHECKPOINT`")
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a model file, read in blocks (what every result records as ``model_sha256``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def evaluation_problems(card: ModelCard) -> list[str]:
    """Why the card's evaluation does not let the model be deployed (empty: it does).

    The block is ``metrics.evaluation``: ``quality`` (the held-out metrics of the quality score, at least
    ``srcc``) and ``floor`` (metric -> minimum, each naming a metric of ``quality``); every floor must be met.
    """
    block = card.metrics.get(EVALUATION_KEY)
    if not isinstance(block, Mapping):
        return ["its card has no evaluation block (metrics.evaluation)"]
    quality = block.get("quality")
    floor = block.get("floor")
    problems: list[str] = []
    if not isinstance(quality, Mapping):
        problems.append("its evaluation has no quality metrics (metrics.evaluation.quality)")
        quality = {}
    elif _number(quality.get("srcc")) is None:
        problems.append("its evaluation has no quality srcc (metrics.evaluation.quality.srcc)")
    said = bool(problems)  # the missing srcc is said once, not again as an unmet floor
    if not isinstance(floor, Mapping) or not floor:
        problems.append('its evaluation states no floor (metrics.evaluation.floor, e.g. {"srcc": 0.5})')
        return problems
    for metric, minimum in floor.items():
        low, value = _number(minimum), _number(quality.get(metric))
        if low is None:
            problems.append(f"its floor for {metric} is not a number ({minimum!r})")
        elif value is None:
            if not (said and metric == "srcc"):
                problems.append(f"its floor names {metric}, which its evaluation does not report")
        elif value < low:
            problems.append(f"quality {metric} {value:.3f} is below the card's floor {low:g}")
    return problems


def gate_model(card: ModelCard, path: Path, allow: bool) -> str | None:
    """The deploy gate. Returns None for an evaluated model that meets its floor; raises ``ModelRefused``
    otherwise, unless ``allow`` (the override): then logs a WARNING and returns what is wrong."""
    problems = evaluation_problems(card)
    if not problems:
        return None
    what = f"{path.name} ({card.name} v{card.version}): {'; '.join(problems)}"
    if not allow:
        raise ModelRefused(f"model refused by the deploy gate: {what}",
                           f"deploy a model whose card carries its evaluation (agent/models/MODEL_CARD.md), or "
                           f"set {OVERRIDE}: true to run it anyway (a WARNING at every start)")
    log.warning("UNEVALUATED MODEL IN USE (%s: true): %s. Its scores and retake alerts are not backed by "
                "an evaluation that meets its floor", OVERRIDE, what)
    return what
