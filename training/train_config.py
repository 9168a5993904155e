"""Training configuration: YAML at the edge, frozen dataclasses inside, validated once.

Unknown keys are errors with a "did you mean" (a typo must not silently train the default), and the
resolved config is saved into every checkpoint and beside the run's outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mediqa.errors import ConfigError
from mediqa.schema import build_dataclass, set_dotted, to_plain

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ModelSection:
    size: str = "edge"  # edge | maniqa-b8
    prompts: bool = True  # False: the "MANIQA without prompts" ablation
    input: str = "crops"  # crops (native resolution, windowed) | recipe (whole image resized, min-max)
    pretrained: str | None = None  # local timm ViT weights (maniqa-b8 only)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # ArchConfig fields (tiny test models)


@dataclass(frozen=True)
class StageSection:
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    samples_per_epoch: int | None = None  # random subset per epoch; None = whole train split
    val_samples: int | None = 1500  # val subset scored after each epoch
    rank_weight: float = 0.0  # stage 2: pairwise ranking loss weight
    physics_weight: float = 0.0  # stage 2: keep the physical heads calibrated while fine-tuning
    expert: str | None = None  # stage 2: a site's expert-score manifest replaces the proxy labels
    clean_share: float = 0.0  # share of each epoch given to undegraded samples (trainset.with_clean_share)


@dataclass(frozen=True)
class TrainConfig:
    data: str = "data-out"
    out: str = "runs/edge"
    seed: int = 0
    threads: int = 2
    workers: int = 0
    crop_size: int = 96
    crops_per_slice: int = 4
    model: ModelSection = field(default_factory=ModelSection)
    stage1: StageSection = field(default_factory=StageSection)
    stage2: StageSection = field(default_factory=StageSection)
    card_name: str = "mediqa-edge"
    card_version: str = "1"
    thresholds: Mapping[str, float] = field(
        default_factory=lambda: {"retake_below": 2.0, "worst_slice_below": 1.0})


def load_config(path: Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read YAML, apply dotted overrides (``{"stage1.epochs": 1}``), validate."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from None
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    cfg = build_dataclass(TrainConfig, raw, "")
    if cfg.model.input not in ("crops", "recipe"):
        raise ConfigError(f"model.input must be 'crops' or 'recipe', not '{cfg.model.input}'")
    return cfg


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dict(to_plain(cfg))
