"""Contract models (tests/contract_model.py) with a chosen evaluation block in their model card."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import onnx
from contract_model import contract_model

from mediqa.model_card import embed_card, read_card


def evaluation(srcc: float, floor: float = 0.5) -> dict[str, Any]:
    return {"dataset": "tiny-test", "split": "test", "n": 40, "label": "proxy_quality",
            "quality": {"srcc": srcc, "plcc": srcc, "krocc": srcc * 0.8, "retake_roc_auc": 0.5},
            "floor": {"srcc": floor}}


def model_with(path: Path, ev: dict[str, Any] | None) -> Path:
    """The contract model at ``path`` whose card's ``metrics.evaluation`` is ``ev`` (None: no block)."""
    contract_model(path)
    card = read_card(path)
    metrics = {k: v for k, v in card.metrics.items() if k != "evaluation"}
    if ev is not None:
        metrics["evaluation"] = ev
    proto = onnx.load(str(path))
    embed_card(proto, dataclasses.replace(card, metrics=metrics))
    onnx.save(proto, str(path))
    return path
