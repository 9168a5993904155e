"""Calibration statistics on synthetic feedback whose best threshold is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from mediqa.agent.calibration.stats import (
    Observation,
    Settings,
    choose_threshold,
    clopper_pearson,
    evaluate,
    propose,
)


def synthetic(n_good: int, n_bad: int, seed: int, good=(3.0, 0.4), bad=(1.2, 0.5)) -> list[Observation]:
    rng = np.random.default_rng(seed)
    return ([Observation(float(s), False) for s in rng.normal(*good, n_good)]
            + [Observation(float(s), True) for s in rng.normal(*bad, n_bad)])


def test_recovers_the_known_best_threshold():
    # Good series ~ N(3.0, 0.4): the threshold that alerts 5 % of them is the 5th percentile, 2.342.
    best = 3.0 + 0.4 * norm.ppf(0.05)
    proposal = propose(synthetic(400, 100, seed=1), Settings(target=0.05, bootstrap=300))
    assert not isinstance(proposal, str), proposal
    assert proposal.threshold == pytest.approx(best, abs=0.12)
    assert proposal.interval is not None and proposal.interval[0] <= best <= proposal.interval[1]
    ev = proposal.evaluation
    assert ev.false_alerts.estimate is not None and ev.false_alerts.estimate <= 0.05
    assert ev.false_alerts.n == 400 and ev.misses.n == 100 and ev.alerts.n == 500
    true_miss = 1 - norm.cdf((best - 1.2) / 0.5)  # about 1 %
    low, high = ev.misses.interval or (1.0, 0.0)
    assert low <= true_miss <= high


def test_a_stricter_target_gives_a_lower_threshold():
    obs = synthetic(400, 100, seed=2)
    loose, strict = propose(obs, Settings(target=0.10, bootstrap=0)), propose(obs, Settings(target=0.01, bootstrap=0))
    assert not isinstance(loose, str) and not isinstance(strict, str)
    assert strict.threshold < loose.threshold
    assert loose.threshold == pytest.approx(3.0 + 0.4 * norm.ppf(0.10), abs=0.12)


def test_works_on_a_few_dozen_labelled_series_with_wide_intervals():
    proposal = propose(synthetic(30, 10, seed=3), Settings(target=0.05, bootstrap=500))
    assert not isinstance(proposal, str), proposal
    low, high = proposal.evaluation.false_alerts.interval or (0.0, 0.0)
    assert high - low > 0.1  # 30 good series cannot pin a 5 % rate down, and the interval says so
    assert proposal.interval is not None and proposal.interval[0] < proposal.threshold <= proposal.interval[1] + 1e-9


def test_too_few_labelled_series_says_how_many_and_how_many_are_needed():
    reason = propose(synthetic(8, 3, seed=4), Settings(min_good=10, min_bad=5))
    assert reason == "too few labelled series (n=11: 8 good, 3 bad; need >= 10 good and >= 5 bad)"
    unlabelled = [Observation(2.5, None)] * 50
    assert "n=0" in str(propose(unlabelled, Settings()))


def test_threshold_alerts_at_most_the_target_share_of_good_series():
    scores = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5], dtype=float)
    none = np.zeros(10, dtype=bool)
    assert choose_threshold(scores, none, 0.05) == 1.0  # 0 of 10 may alert: just at the lowest good score
    assert choose_threshold(scores, none, 0.10) == 1.5  # 1 of 10
    assert choose_threshold(scores, none, 0.20) == 2.0
    obs = [Observation(float(s), False) for s in scores]
    assert evaluate(obs, 1.5).false_alerts.k == 1


def test_worst_slice_alerts_count_against_the_target():
    scores = np.linspace(2.0, 3.9, 20)
    forced = np.zeros(20, dtype=bool)
    forced[[5, 12]] = True  # two good series alert through their worst slice whatever the series threshold
    assert choose_threshold(scores, forced, 0.10) == pytest.approx(2.0)  # 2 of 20 already spent
    obs = [Observation(float(s), False, forced=bool(f)) for s, f in zip(scores, forced, strict=True)]
    obs += [Observation(1.0, True)] * 5
    reason = propose(obs, Settings(target=0.05))
    assert isinstance(reason, str) and "worst-slice rule alone alerts 2 of 20" in reason


def test_clopper_pearson_matches_its_closed_forms():
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10))
    low, high = clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10))
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.1871, abs=1e-4) and high == pytest.approx(0.8129, abs=1e-4)
    low, high = clopper_pearson(3, 40)
    assert low < 3 / 40 < high and math.isclose(high, 0.2039, abs_tol=1e-3)
