"""Stage 1 (upstream): regress the physical acquisition labels (dose, SNR, motion...), one head each.

MedIQA's first stage: the network learns what a quarter dose or a motion-corrupted k-space looks like
from labels that are exact by construction (the degradation parameters), before it ever sees a
quality score. Each head is masked where its label is null (a dose head on an MR slice). The best
checkpoint has the highest mean validation SRCC over the heads. The loop is ``run_stage``'s.
Run: ``mediqa train --config configs/train/edge.yaml --stage 1 [--resume]``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from mediqa.model_card import ModelCard
from mediqa.training.losses import physics_loss
from mediqa.training.model import MedIQAManiqa
from mediqa.training.run_stage import Batch, Stage, head_ranges, run_stage
from mediqa.training.train_config import TrainConfig
from mediqa.training.trainset import BuiltDataSet

logger = logging.getLogger(__name__)


def heads_loss(model: MedIQAManiqa, batch: Batch) -> torch.Tensor:
    _, physics = model(batch.image, batch.prompt)
    return physics_loss(physics, batch.target, head_ranges(model))


def mean_head_srcc(metrics: dict[str, float]) -> float:
    head_srcc = [v for k, v in metrics.items() if k != "val_srcc_quality" and math.isfinite(v)]
    return float(np.mean(head_srcc)) if head_srcc else math.nan


def _heads(ds: BuiltDataSet, card: ModelCard) -> str:
    return f"heads {list(card.heads)}"


def train_stage1(cfg: TrainConfig, resume: bool = False) -> Path:
    stage = Stage(number=1, section=cfg.stage1, data=Path(cfg.data), loss=heads_loss, score=mean_head_srcc,
                  subset_seed=cfg.seed, crop_seed=cfg.seed * 1000, title="stage 1: physical heads",
                  val_label="val head SRCC", about=_heads)
    return run_stage(cfg, stage, resume)
