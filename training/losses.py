"""The two stages' losses, on normalised scales so that heads with different units weigh alike."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


def physics_loss(pred: Tensor, target: Tensor, ranges: Tensor) -> Tensor:
    """Masked MSE over heads: a NaN target means the head does not apply to that sample.

    Both sides are mapped by the head's range to ~[0, 1], so a log2-dose head and an SNR head count
    equally; the mean is over the valid (sample, head) pairs only.
    """
    lo, span = ranges[:, 0], (ranges[:, 1] - ranges[:, 0]).clamp_min(1e-6)
    valid = torch.isfinite(target)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    err = ((pred - lo) / span - (torch.nan_to_num(target) - lo) / span) ** 2
    return err[valid].mean()


def quality_loss(pred: Tensor, target: Tensor, score_range: Tensor) -> Tensor:
    """Per-slice MSE against the label, both min-max scaled to [0, 1] as MANIQA trains."""
    span = (score_range[1] - score_range[0]).clamp_min(1e-6)
    return (((pred - target) / span) ** 2).mean()


def ranking_loss(pred: Tensor, target: Tensor, margin: float = 0.02, min_gap: float = 0.1) -> Tensor:
    """Pairwise hinge: for label pairs further apart than ``min_gap``, the better one must score higher
    by ``margin`` (score units). Teaches order directly, which SRCC rewards and MSE only implies."""
    dp = pred[:, None] - pred[None, :]
    dt = target[:, None] - target[None, :]
    pairs = dt > min_gap
    if not bool(pairs.any()):
        return pred.sum() * 0.0
    return torch.relu(margin - dp[pairs]).mean()
