"""Stage 2 (downstream): fine-tune on quality labels, starting from the stage-1 network.

Labels are the data set's proxy ``quality`` by default; ``stage2.expert`` names a site's expert-scored
data set (same format, its ``quality`` holding the experts' scores) to fine-tune on instead.
Loss: per-slice MSE against the label (MANIQA, MedIQA), plus an optional pairwise ranking term, plus
a small physics term that keeps the heads, which explain each alert, calibrated. The best checkpoint
has the highest validation quality SRCC. The loop is ``run_stage``'s.
Run: ``mediqa train --config configs/train/edge.yaml --stage 2 [--resume]``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from mediqa.errors import ConfigError
from mediqa.model_card import ModelCard
from mediqa.training.losses import physics_loss, quality_loss, ranking_loss
from mediqa.training.model import MedIQAManiqa
from mediqa.training.run_stage import Batch, Stage, head_ranges, run_stage
from mediqa.training.train_common import init_from
from mediqa.training.train_config import StageSection, TrainConfig
from mediqa.training.trainset import BuiltDataSet

logger = logging.getLogger(__name__)


def quality_objective(st: StageSection, model: MedIQAManiqa, batch: Batch) -> torch.Tensor:
    pred_q, physics = model(batch.image, batch.prompt)
    keep = torch.isfinite(batch.quality)
    loss = quality_loss(pred_q[keep], batch.quality[keep], model.score_range)
    if st.rank_weight:
        loss = loss + st.rank_weight * ranking_loss(pred_q[keep], batch.quality[keep])
    if st.physics_weight:
        loss = loss + st.physics_weight * physics_loss(physics, batch.target, head_ranges(model))
    return loss


def quality_srcc(metrics: dict[str, float]) -> float:
    return metrics["val_srcc_quality"]


def _labels(ds: BuiltDataSet, card: ModelCard) -> str:
    return f"labels '{ds.manifest.get('quality', {}).get('name', 'quality')}'"


def from_stage1(source: Path, model: MedIQAManiqa) -> None:
    if not source.is_file():
        raise ConfigError(f"stage 2 starts from stage 1, and {source} does not exist",
                          "run `mediqa train --stage 1` first")
    init_from(source, model)
    logger.info("stage 2 starts from %s", source)


def train_stage2(cfg: TrainConfig, resume: bool = False, init: Path | None = None) -> Path:
    st = cfg.stage2
    source = init or Path(cfg.out) / "stage1" / "last.pt"
    stage = Stage(number=2, section=st, data=Path(st.expert or cfg.data),
                  loss=functools.partial(quality_objective, st), score=quality_srcc,
                  subset_seed=cfg.seed + 1, crop_seed=cfg.seed * 1000 + 500, title="stage 2: quality",
                  val_label="val SRCC", about=_labels, start=functools.partial(from_stage1, source))
    return run_stage(cfg, stage, resume)
