"""What a task's degradation functions share: the list they return (``Made``) and their seeding (``rng_for``).

``tasks`` runs ``tasks_ct`` and ``tasks_mr``; both of those need these two names, so they live here and the
imports point one way: tasks -> tasks_ct / tasks_mr -> made.
"""

from __future__ import annotations

import numpy as np

from mediqa.training.datagen.config import DataConfig
from mediqa.training.datagen.sources import SourceSeries
from mediqa.training.degrade.base import Degraded, child_rng

Made = list[tuple[int, int, Degraded, np.ndarray]]  # (slice, level, degraded, clean full slice)


def rng_for(cfg: DataConfig, src: SourceSeries, slice_index: int, kind: str, level: int) -> np.random.Generator:
    """The generator of one degradation level of one slice: a function of names and numbers only."""
    return child_rng(cfg.seed, src.spec.name, slice_index, kind, level)
