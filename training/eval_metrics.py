"""IQA agreement metrics as the literature reports them (VQEG / LDCT-IQA conventions).

PLCC is computed after the usual 4-parameter logistic mapping of predictions onto the label scale,
so it measures agreement after monotonic calibration; SRCC and KROCC are rank-based and need none.
ROC-AUC (Mann-Whitney, ties counted half) scores the retake decision without choosing a threshold.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

logger = logging.getLogger(__name__)

Values = Sequence[float] | np.ndarray  # one value per sample


def _valid(pred: Values, truth: Values) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep]


def srcc(pred: Values, truth: Values) -> float:
    p, t = _valid(pred, truth)
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return math.nan
    return float(stats.spearmanr(p, t).statistic)


def krocc(pred: Values, truth: Values) -> float:
    p, t = _valid(pred, truth)
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return math.nan
    return float(stats.kendalltau(p, t).statistic)


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    return (b1 - b2) / (1.0 + np.exp(np.clip(-(x - b3) / (abs(b4) + 1e-12), -60.0, 60.0))) + b2


def fit_logistic(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Predictions mapped onto the label scale; falls back to a linear fit when the fit diverges."""
    p0 = [float(truth.max()), float(truth.min()), float(np.median(pred)), float(pred.std() + 1e-6)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, truth, p0=p0, maxfev=20000)
        return logistic4(pred, *params)
    except (RuntimeError, optimize.OptimizeWarning, ValueError) as exc:
        logger.debug("logistic fit failed (%s): linear fit instead", exc)
        slope, intercept = np.polyfit(pred, truth, 1)
        return slope * pred + intercept


def plcc(pred: Values, truth: Values) -> float:
    p, t = _valid(pred, truth)
    if len(p) < 5 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return math.nan
    fitted = fit_logistic(p, t)
    if np.ptp(fitted) == 0:
        return math.nan
    # The logistic may decrease; the sign of the raw correlation keeps an inverted scorer negative.
    direction = 1.0 if stats.pearsonr(p, t).statistic >= 0 else -1.0
    return direction * abs(float(stats.pearsonr(fitted, t).statistic))


def roc_auc(scores: Values, positive: Sequence[bool] | np.ndarray) -> float:
    """Probability that a positive (retake needed) outranks a negative; NaN without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def agreement(pred: Values, truth: Values) -> dict[str, float]:
    p, t = _valid(pred, truth)
    return {"n": float(len(p)), "srcc": srcc(p, t), "plcc": plcc(p, t), "krocc": krocc(p, t)}
