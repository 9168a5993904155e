"""The one training loop of both stages: epochs of random crops, validation, checkpoints, resume, curves.

A stage script says only what makes it that stage (``Stage``): its data set, its loss, how its checkpoint is
chosen and, for stage 2, where its weights start. Everything else happens here in one fixed order, so both
stages write the same files in the same format: ``<out>/stage<N>/config.yaml``, ``last.pt`` (weights,
optimizer, scheduler, epoch, history), ``best.pt`` and ``curves.png``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from mediqa.model_card import ModelCard
from mediqa.training.curves import plot_curves
from mediqa.training.model import MedIQAManiqa
from mediqa.training.progress import progress
from mediqa.training.train_common import (
    make_card,
    make_optimizer,
    new_model,
    resume_or_start,
    save_stage,
    seed_everything,
    validate,
)
from mediqa.training.train_config import StageSection, TrainConfig, config_dict
from mediqa.training.trainset import (
    BuiltDataSet,
    CropDataset,
    epoch_subset,
    is_undegraded,
    open_dataset,
    with_clean_share,
)

logger = logging.getLogger(__name__)


class Batch(NamedTuple):
    """One batch of ``CropDataset``: image [B,C,s,s], prompt [B,4], physics targets [B,P], quality [B]."""

    image: torch.Tensor
    prompt: torch.Tensor
    target: torch.Tensor
    quality: torch.Tensor


Loss = Callable[[MedIQAManiqa, Batch], torch.Tensor]


@dataclass(frozen=True)
class Stage:
    """What one stage is. The seeds are the bases of the per-epoch subset and crop generators."""

    number: int
    section: StageSection
    data: Path
    loss: Loss
    score: Callable[[dict[str, float]], float]  # validation metrics -> the value best.pt maximises
    subset_seed: int
    crop_seed: int
    title: str  # of the curves
    val_label: str  # of the per-epoch log line
    about: Callable[[BuiltDataSet, ModelCard], str]  # the end of the start log line
    start: Callable[[MedIQAManiqa], None] | None = None  # a fresh (not resumed) run's initial weights


def head_ranges(model: MedIQAManiqa) -> torch.Tensor:
    """[P, 2] target range of each physical head (the model's buffer, as the losses expect)."""
    return model.physics_range[: model.arch.num_physics]


def run_stage(cfg: TrainConfig, stage: Stage, resume: bool = False) -> Path:
    """Train ``stage`` for its epochs (from the last completed one with ``resume``); returns its last.pt."""
    seed_everything(cfg)
    st = stage.section
    ds = open_dataset(stage.data)
    out = Path(cfg.out) / f"stage{stage.number}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
    train_idx, val_idx = ds.split("train"), ds.split("val")[: st.val_samples]
    per_epoch = min(len(train_idx), st.samples_per_epoch or len(train_idx))
    clean_idx = [i for i in train_idx if is_undegraded(ds.samples[i])]
    model = new_model(cfg, ds)
    opt, sched = make_optimizer(model, st, math.ceil(per_epoch / st.batch_size) * st.epochs)
    state = resume_or_start(out / "last.pt", model, opt, sched, resume)
    if state.epoch == 0 and stage.start is not None:
        stage.start(model)
    card = make_card(cfg, ds, model, stage=stage.number)
    name = f"stage {stage.number}"
    logger.info("%s: %d train / %d val samples, %d per epoch (%.0f %% undegraded, of %d), %d epochs, %s", name,
                len(train_idx), len(val_idx), per_epoch, 100 * st.clean_share, len(clean_idx), st.epochs,
                stage.about(ds, card))

    for epoch in range(state.epoch, st.epochs):
        subset = epoch_subset(train_idx, st.samples_per_epoch, stage.subset_seed, epoch)
        subset = with_clean_share(subset, clean_idx, st.clean_share, stage.subset_seed, epoch)
        data = CropDataset(ds, subset, card, cfg.model.input, seed=stage.crop_seed + epoch)
        loader = DataLoader(data, batch_size=st.batch_size, shuffle=False, num_workers=cfg.workers)
        model.train()
        losses: list[float] = []
        bar = progress(loader, desc=f"{name} epoch {epoch + 1}/{st.epochs}", unit="batch")
        for image, prompt, target, quality in bar:
            loss = stage.loss(model, Batch(image, prompt, target, quality))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            state.step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{sched.get_last_lr()[0]:.1e}")

        metrics = validate(model, ds, val_idx, card, cfg.model.input)
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **metrics})
        logger.info("%s epoch %d: loss %.4f, %s %s", name, epoch + 1, np.mean(losses), stage.val_label,
                    {k[9:]: round(v, 3) for k, v in metrics.items()})
        card = make_card(cfg, ds, model, stage=stage.number, metrics={"val": metrics, "epoch": epoch + 1})
        save_stage(out, model, card, cfg, state, opt, sched, stage.score(metrics))
        plot_curves(state.history, out / "curves.png", stage.title)
    return out / "last.pt"
