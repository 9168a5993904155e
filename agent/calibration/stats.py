"""The statistics of site calibration: a threshold for a target false-alert rate, and how sure it is.

A threshold ``t`` alerts a series when its score is below ``t``, or when the worst-slice rule alerts it
anyway (``forced``: such a series alerts at every ``t``, so it counts against the target whatever is chosen).

- false-alert rate: the share of *good* series (labelled "should not alert") that alert;
- miss rate: the share of *bad* series (labelled "should alert") that do not;
- alert rate: the share of *all* scored series of the group, labelled or not, that alert.

The proposal is the largest ``t`` (fewest misses) whose false-alert rate on the labelled good series is
at most the target. It depends on the good series only, so its uncertainty is a bootstrap over them (95 %
percentile interval, seeded: the same data give the same file). Rates carry exact Clopper-Pearson 95 %
intervals: with a few dozen labels they are wide, and the point is to show that. The rates are measured on
the series the threshold was chosen on, so they are optimistic; the intervals say how far they may move.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCORE_MIN, SCORE_MAX = 0.0, 4.0
LEVEL = 0.95


@dataclass(frozen=True)
class Observation:
    score: float
    label: bool | None  # True: should alert (bad); False: should not (good); None: unlabelled
    forced: bool = False  # alerts whatever the threshold (its worst slice broke worst_slice_below)
    alerted_now: bool = False  # its recorded decision was a retake


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact binomial interval for ``k`` of ``n`` (never narrower than the truth, unlike Wald's)."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


@dataclass(frozen=True)
class Rate:
    k: int
    n: int

    @property
    def estimate(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return clopper_pearson(self.k, self.n) if self.n else None


@dataclass(frozen=True)
class Evaluation:
    threshold: float | None  # None: the decisions as recorded (the configured thresholds)
    false_alerts: Rate  # good series that alert
    misses: Rate  # bad series that do not alert
    alerts: Rate  # all series that alert


@dataclass(frozen=True)
class Settings:
    target: float = 0.05  # false-alert rate to stay under, on the good series
    min_good: int = 10
    min_bad: int = 5
    bootstrap: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class Proposal:
    threshold: float
    interval: tuple[float, float] | None  # bootstrap 95 % percentile interval; None if too few resamples reached it
    evaluation: Evaluation


def rates(observations: Sequence[Observation], alerts: Sequence[bool], threshold: float | None) -> Evaluation:
    good = [a for o, a in zip(observations, alerts, strict=True) if o.label is False]
    bad = [a for o, a in zip(observations, alerts, strict=True) if o.label is True]
    return Evaluation(threshold, Rate(sum(good), len(good)), Rate(len(bad) - sum(bad), len(bad)),
                      Rate(sum(alerts), len(alerts)))


def evaluate(observations: Sequence[Observation], threshold: float) -> Evaluation:
    return rates(observations, [o.forced or o.score < threshold for o in observations], threshold)


def as_recorded(observations: Sequence[Observation]) -> Evaluation:
    return rates(observations, [o.alerted_now for o in observations], None)


def choose_threshold(good_scores: np.ndarray, good_forced: np.ndarray, target: float) -> float | None:
    """The largest threshold (on a 0.01 grid) that alerts at most ``target`` of the good series.

    None when the forced alerts alone exceed the target: no threshold on the score can reach it.
    """
    n = len(good_scores)
    allowed = math.floor(target * n + 1e-9) - int(np.count_nonzero(good_forced))
    if n == 0 or allowed < 0:
        return None
    free = np.sort(good_scores[~good_forced])
    if allowed >= len(free):
        return SCORE_MAX
    # At t = the (allowed+1)-th lowest free score exactly `allowed` of them are below t (ties: fewer);
    # rounding down to the grid keeps it so, and gives a number a reviewer can read.
    return float(min(SCORE_MAX, max(SCORE_MIN, math.floor(float(free[allowed]) * 100 + 1e-9) / 100)))


def too_few(observations: Sequence[Observation], settings: Settings) -> str | None:
    n_good = sum(o.label is False for o in observations)
    n_bad = sum(o.label is True for o in observations)
    if n_good >= settings.min_good and n_bad >= settings.min_bad:
        return None
    return (f"too few labelled series (n={n_good + n_bad}: {n_good} good, {n_bad} bad; "
            f"need >= {settings.min_good} good and >= {settings.min_bad} bad)")


def propose(observations: Sequence[Observation], settings: Settings) -> Proposal | str:
    """A proposal, or the reason there is none (too few labels, or a target no threshold reaches)."""
    reason = too_few(observations, settings)
    if reason:
        return reason
    good = [o for o in observations if o.label is False]
    scores = np.array([o.score for o in good], dtype=np.float64)
    forced = np.array([o.forced for o in good], dtype=bool)
    threshold = choose_threshold(scores, forced, settings.target)
    if threshold is None:
        k = int(forced.sum())
        return (f"the worst-slice rule alone alerts {k} of {len(good)} good series ({k / len(good):.0%}), above the "
                f"target {settings.target:.0%}: no series threshold reaches it (review worst_slice_below)")
    return Proposal(threshold, _bootstrap(scores, forced, settings), evaluate(observations, threshold))


def _bootstrap(scores: np.ndarray, forced: np.ndarray, settings: Settings) -> tuple[float, float] | None:
    if settings.bootstrap < 1:
        return None
    rng = np.random.default_rng(settings.seed)
    picks = rng.integers(0, len(scores), size=(settings.bootstrap, len(scores)))
    found = [t for t in (choose_threshold(scores[p], forced[p], settings.target) for p in picks) if t is not None]
    if len(found) < settings.bootstrap / 2:  # the target is reached in too few resamples to say more
        return None
    low, high = np.percentile(np.asarray(found), [2.5, 97.5])
    return float(low), float(high)
