"""The epoch mix: clean_share gives a fixed share of each epoch to the undegraded samples."""

from __future__ import annotations

import pytest

from mediqa.errors import MediqaError
from mediqa.training.trainset import epoch_subset, is_undegraded, with_clean_share


def test_undegraded_is_the_none_copy_or_full_dose_ct() -> None:
    assert is_undegraded({"degradation": {"type": "none", "level": 0}})
    assert is_undegraded({"degradation": {"type": "ct_dose", "params": {"dose_fraction": 1.0}}})
    assert not is_undegraded({"degradation": {"type": "ct_dose", "params": {"dose_fraction": 0.5}}})
    assert not is_undegraded({"degradation": {"type": "mr_noise", "params": {"target_snr": 40.0}}})
    assert not is_undegraded({})


def test_share_of_each_epoch_is_clean_and_the_length_is_kept() -> None:
    train = list(range(1000))
    clean = list(range(0, 1000, 20))  # 5 %, as MR in the default set
    for epoch in range(3):
        subset = epoch_subset(train, 400, seed=1, epoch=epoch)
        mixed = with_clean_share(subset, clean, 0.25, seed=1, epoch=epoch)
        assert len(mixed) == 400
        share = sum(i in set(clean) for i in mixed) / len(mixed)
        assert 0.25 <= share <= 0.25 + 0.05 * 2  # drawn ones plus the few already in the random part
        assert mixed == with_clean_share(subset, clean, 0.25, seed=1, epoch=epoch)  # deterministic


def test_zero_share_changes_nothing_and_bad_shares_say_what_to_use() -> None:
    subset = epoch_subset(list(range(50)), None, seed=0, epoch=0)
    assert with_clean_share(subset, [1, 2], 0.0, seed=0, epoch=0) == subset
    assert with_clean_share(subset, [], 0.3, seed=0, epoch=0) == subset
    with pytest.raises(MediqaError, match="outside"):
        with_clean_share(subset, [1], 1.0, seed=0, epoch=0)
