"""Stage 1 (upstream): regress the physical acquisition labels (dose, SNR, motion...), one head each.

MedIQA's first stage: the network learns what a quarter dose or a motion-corrupted k-space looks like
from labels that are exact by construction (the degradation parameters), before it ever sees a
quality score. Each head is masked where its label is null (a dose head on an MR slice).
Run: ``mediqa train --config configs/train/edge.yaml --stage 1 [--resume]``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from mediqa.training.curves import plot_curves
from mediqa.training.losses import physics_loss
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
from mediqa.training.train_config import TrainConfig, config_dict
from mediqa.training.trainset import CropDataset, epoch_subset, open_dataset

logger = logging.getLogger(__name__)


def train_stage1(cfg: TrainConfig, resume: bool = False) -> Path:
    seed_everything(cfg)
    ds = open_dataset(Path(cfg.data))
    out = Path(cfg.out) / "stage1"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
    st = cfg.stage1
    train_idx, val_idx = ds.split("train"), ds.split("val")[: st.val_samples]
    per_epoch = min(len(train_idx), st.samples_per_epoch or len(train_idx))
    model = new_model(cfg, ds)
    opt, sched = make_optimizer(model, st, math.ceil(per_epoch / st.batch_size) * st.epochs)
    state = resume_or_start(out / "last.pt", model, opt, sched, resume)
    card = make_card(cfg, ds, model, stage=1)
    ranges = model.physics_range[: model.arch.num_physics]
    logger.info("stage 1: %d train / %d val samples, %d per epoch, %d epochs, heads %s",
                len(train_idx), len(val_idx), per_epoch, st.epochs, list(card.heads))

    for epoch in range(state.epoch, st.epochs):
        subset = epoch_subset(train_idx, st.samples_per_epoch, cfg.seed, epoch)
        data = CropDataset(ds, subset, card, cfg.model.input, seed=cfg.seed * 1000 + epoch)
        loader = DataLoader(data, batch_size=st.batch_size, shuffle=False, num_workers=cfg.workers)
        model.train()
        losses: list[float] = []
        bar = progress(loader, desc=f"stage 1 epoch {epoch + 1}/{st.epochs}", unit="batch")
        for image, prompt, target, _quality in bar:
            _, physics = model(image, prompt)
            loss = physics_loss(physics, target, ranges)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            state.step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{sched.get_last_lr()[0]:.1e}")

        metrics = validate(model, ds, val_idx, card, cfg.model.input)
        head_srcc = [v for k, v in metrics.items() if k != "val_srcc_quality" and math.isfinite(v)]
        score = float(np.mean(head_srcc)) if head_srcc else math.nan
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **metrics})
        logger.info("stage 1 epoch %d: loss %.4f, val head SRCC %s", epoch + 1, np.mean(losses),
                    {k[9:]: round(v, 3) for k, v in metrics.items()})
        card = make_card(cfg, ds, model, stage=1, metrics={"val": metrics, "epoch": epoch + 1})
        save_stage(out, model, card, cfg, state, opt, sched, score)
        plot_curves(state.history, out / "curves.png", "stage 1: physical heads")
    return out / "last.pt"
