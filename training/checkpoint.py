"""Checkpoints that describe themselves (house style 10, after nanoGPT).

A checkpoint holds the weights, the optimizer and scheduler state (to resume), the epoch, the
loss history, the resolved training config and the model card as JSON. Anything downstream
(export, eval, the next stage) rebuilds the network from the card's ``architecture`` alone.
Writes go to a temporary file and are renamed, so a run killed mid-save keeps the previous one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mediqa.errors import ModelError
from mediqa.model_card import ModelCard
from mediqa.training.model import MedIQAManiqa, build_model

logger = logging.getLogger(__name__)

FORMAT = "mediqa-checkpoint-1"


@dataclass
class TrainState:
    """What a resumed run needs besides the model: where it was and what it saw."""

    epoch: int = 0  # epochs completed
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None


def save_checkpoint(path: Path, model: MedIQAManiqa, card: ModelCard, config: dict[str, Any],
                    state: TrainState, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
    payload = {
        "format": FORMAT,
        "model": model.state_dict(),
        "model_card": card.to_json(),
        "config": config,
        "state": {"epoch": state.epoch, "step": state.step, "history": state.history, "best": state.best},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".pt.tmp")
    os.close(fd)
    torch.save(payload, tmp)
    os.replace(tmp, path)
    logger.debug("saved %s (epoch %d)", path, state.epoch)


def read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found", "train one with `mediqa train`")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not a MedIQA checkpoint", "pass a file written by `mediqa train`")
    return payload


def load_model(path: Path) -> tuple[MedIQAManiqa, ModelCard, dict[str, Any]]:
    """Rebuild the network from the card's architecture, load the weights; eval mode."""
    payload = read_checkpoint(path)
    card = ModelCard.from_json(payload["model_card"])
    model = build_model(card.architecture)
    model.load_state_dict(payload["model"])
    return model.eval(), card, payload


def train_state(payload: dict[str, Any]) -> TrainState:
    raw = payload.get("state") or {}
    return TrainState(epoch=int(raw.get("epoch", 0)), step=int(raw.get("step", 0)),
                      history=list(raw.get("history", [])), best=raw.get("best"))
