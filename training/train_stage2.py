"""Stage 2 (downstream): fine-tune on quality labels, starting from the stage-1 network.

Labels are the data set's proxy ``quality`` by default; ``stage2.expert`` names a site's expert-scored
data set (same format, its ``quality`` holding the experts' scores) to fine-tune on instead.
Loss: per-slice MSE against the label (MANIQA, MedIQA), plus an optional pairwise ranking term, plus
a small physics term that keeps the heads, which explain each alert, calibrated.
Run: ``mediqa train --config configs/train/edge.yaml --stage 2 [--resume]``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from mediqa.errors import ConfigError
from mediqa.training.curves import plot_curves
from mediqa.training.losses import physics_loss, quality_loss, ranking_loss
from mediqa.training.progress import progress
from mediqa.training.train_common import (
    init_from,
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


def train_stage2(cfg: TrainConfig, resume: bool = False, init: Path | None = None) -> Path:
    seed_everything(cfg)
    st = cfg.stage2
    ds = open_dataset(Path(st.expert or cfg.data))
    out = Path(cfg.out) / "stage2"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
    train_idx, val_idx = ds.split("train"), ds.split("val")[: st.val_samples]
    per_epoch = min(len(train_idx), st.samples_per_epoch or len(train_idx))
    model = new_model(cfg, ds)
    opt, sched = make_optimizer(model, st, math.ceil(per_epoch / st.batch_size) * st.epochs)
    state = resume_or_start(out / "last.pt", model, opt, sched, resume)
    if state.epoch == 0:
        source = init or Path(cfg.out) / "stage1" / "last.pt"
        if not source.is_file():
            raise ConfigError(f"stage 2 starts from stage 1, and {source} does not exist",
                              "run `mediqa train --stage 1` first")
        init_from(source, model)
        logger.info("stage 2 starts from %s", source)
    card = make_card(cfg, ds, model, stage=2)
    ranges = model.physics_range[: model.arch.num_physics]
    logger.info("stage 2: %d train / %d val samples, %d per epoch, %d epochs, labels '%s'", len(train_idx),
                len(val_idx), per_epoch, st.epochs, ds.manifest.get("quality", {}).get("name", "quality"))

    for epoch in range(state.epoch, st.epochs):
        subset = epoch_subset(train_idx, st.samples_per_epoch, cfg.seed + 1, epoch)
        data = CropDataset(ds, subset, card, cfg.model.input, seed=cfg.seed * 1000 + 500 + epoch)
        loader = DataLoader(data, batch_size=st.batch_size, shuffle=False, num_workers=cfg.workers)
        model.train()
        losses: list[float] = []
        bar = progress(loader, desc=f"stage 2 epoch {epoch + 1}/{st.epochs}", unit="batch")
        for image, prompt, target, quality in bar:
            pred_q, physics = model(image, prompt)
            keep = torch.isfinite(quality)
            loss = quality_loss(pred_q[keep], quality[keep], model.score_range)
            if st.rank_weight:
                loss = loss + st.rank_weight * ranking_loss(pred_q[keep], quality[keep])
            if st.physics_weight:
                loss = loss + st.physics_weight * physics_loss(physics, target, ranges)
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
        logger.info("stage 2 epoch %d: loss %.4f, val SRCC %s", epoch + 1, np.mean(losses),
                    {k[9:]: round(v, 3) for k, v in metrics.items()})
        card = make_card(cfg, ds, model, stage=2, metrics={"val": metrics, "epoch": epoch + 1})
        save_stage(out, model, card, cfg, state, opt, sched, metrics["val_srcc_quality"])
        plot_curves(state.history, out / "curves.png", "stage 2: quality")
    return out / "last.pt"
