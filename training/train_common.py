"""What both training stages share: model and card construction, optimizer, resume, validation, saving.

The one loop that uses these is ``run_stage``; the stage scripts keep only their losses, data and
checkpoint choice in view, so that stage 1 and stage 2 build identical model cards and checkpoints.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from mediqa import __version__
from mediqa.model_card import DEFAULT_VOCABULARY, PROMPT_FIELDS, ModelCard, Preprocessing
from mediqa.training.checkpoint import TrainState, load_model, read_checkpoint, save_checkpoint, train_state
from mediqa.training.eval_metrics import srcc
from mediqa.training.model import MedIQAManiqa, arch_dict, arch_for, build_model
from mediqa.training.predict import predict_samples, torch_runner
from mediqa.training.pretrained import load_vit_weights
from mediqa.training.train_config import StageSection, TrainConfig, config_dict
from mediqa.training.trainset import BuiltDataSet

logger = logging.getLogger(__name__)


def seed_everything(cfg: TrainConfig) -> None:
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)


def make_card(cfg: TrainConfig, ds: BuiltDataSet, model: MedIQAManiqa, stage: int,
              metrics: dict[str, Any] | None = None) -> ModelCard:
    quality = ds.manifest.get("quality", {})
    lo, hi = quality.get("scale", [0.0, 4.0])
    return ModelCard(
        name=cfg.card_name, version=cfg.card_version, architecture=arch_dict(model.arch),
        preprocessing=Preprocessing(crop_size=cfg.crop_size, crops_per_slice=cfg.crops_per_slice),
        vocabulary=dict(DEFAULT_VOCABULARY), score_range=(float(lo), float(hi)), higher_is_better=True,
        score_label=str(quality.get("kind", "physics-derived proxy quality (not an expert score)")),
        heads=tuple(h["name"] for h in ds.heads),
        head_info={h["name"]: {k: h.get(k) for k in ("modality", "unit", "transform", "range", "neutral")}
                   for h in ds.heads},
        thresholds=dict(cfg.thresholds),
        training={"dataset": ds.manifest.get("name"), "dataset_version": ds.version, "seed": cfg.seed,
                  "stage": stage, "input": cfg.model.input, "prompts": cfg.model.prompts,
                  "quality_label": quality.get("name", "quality"), "expert": cfg.stage2.expert if stage == 2 else None,
                  "code_version": __version__},
        metrics=dict(metrics or {}),
    )


def new_model(cfg: TrainConfig, ds: BuiltDataSet) -> MedIQAManiqa:
    vocab_sizes = tuple(len(DEFAULT_VOCABULARY[k]) for k in PROMPT_FIELDS)
    arch = arch_for(cfg.model.size, img_size=cfg.crop_size, prompts=cfg.model.prompts, vocab_sizes=vocab_sizes,
                    num_physics=len(ds.heads), score_range=tuple(ds.manifest.get("quality", {}).get("scale", (0, 4))),
                    **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.overrides.items()})
    model = build_model(arch, ds.physics_range())
    if cfg.model.pretrained:
        load_vit_weights(model.vit, Path(cfg.model.pretrained))
    return model


def make_optimizer(model: torch.nn.Module, stage: StageSection, total_steps: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with linear warm-up then cosine decay (MANIQA trains with a cosine schedule)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n and "table" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n and "table" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": stage.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=stage.lr)
    warm = max(1, min(stage.warmup_steps, total_steps // 5))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm)))) * 0.95 + 0.05

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def resume_or_start(path: Path, model: MedIQAManiqa, opt: torch.optim.Optimizer, sched: LRScheduler,
                    resume: bool) -> TrainState:
    if not (resume and path.is_file()):
        return TrainState()
    payload = read_checkpoint(path)
    model.load_state_dict(payload["model"])
    if payload.get("optimizer"):
        opt.load_state_dict(payload["optimizer"])
    if payload.get("scheduler"):
        sched.load_state_dict(payload["scheduler"])
    state = train_state(payload)
    logger.info("resumed %s at epoch %d", path, state.epoch)
    return state


def init_from(path: Path, model: MedIQAManiqa) -> None:
    """Stage 2 starts from stage 1's weights (same architecture, checked by the card)."""
    src, _, _ = load_model(path)
    if src.arch != model.arch:
        raise ValueError(f"stage-1 checkpoint {path} has architecture {src.arch}, config wants {model.arch}")
    model.load_state_dict(src.state_dict())


def validate(model: MedIQAManiqa, ds: BuiltDataSet, indices: list[int], card: ModelCard,
             input_mode: str) -> dict[str, float]:
    """Val SRCC of the quality score and of every head on one crop per sample (fast): the
    agent's first deterministic crop, the one with most tissue."""
    model.eval()
    q, phys = predict_samples(torch_runner(model), ds, indices, card, input_mode, crops=1)
    model.train()
    truth_q = np.array([ds.samples[i].get("quality", np.nan) for i in indices], dtype=np.float64)
    out = {"val_srcc_quality": srcc(q, truth_q)}
    targets = np.stack([ds.targets(i) for i in indices]) if indices else np.zeros((0, len(ds.heads)))
    for j, head in enumerate(ds.heads):
        out[f"val_srcc_{head['name']}"] = srcc(phys[:, j], targets[:, j])
    return out


def save_stage(out: Path, model: MedIQAManiqa, card: ModelCard, cfg: TrainConfig, state: TrainState,
               opt: torch.optim.Optimizer, sched: LRScheduler, score: float) -> None:
    save_checkpoint(out / "last.pt", model, card, config_dict(cfg), state, opt, sched)
    if state.best is None or (math.isfinite(score) and score >= state.best):
        state.best = score
        save_checkpoint(out / "best.pt", model, card, config_dict(cfg), state)
        save_checkpoint(out / "last.pt", model, card, config_dict(cfg), state, opt, sched)  # records best
