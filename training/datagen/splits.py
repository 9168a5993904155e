"""Train/val/test by source group and vendor, never by slice.

Slices of one series are strongly correlated, and two reconstructions of one acquisition are the same
patient: a split that cuts a group leaks. Site/scanner shifts are the real test (MRIQC on unseen sites:
k-fold across sites overstates AUC by ~0.15, Esteban et al. 2017), so every series of a held-out vendor is
test, and none of it is ever trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from mediqa.errors import ConfigError
from mediqa.training.datagen.config import SplitConfig

log = logging.getLogger(__name__)


def assign_splits(groups: Iterable[tuple[str, str]], cfg: SplitConfig) -> dict[str, str]:
    """``(group, vendor)`` pairs -> ``{group: split}``. A group with two vendors, one held out, is an error."""
    vendors_of: dict[str, set[str]] = {}
    for group, vendor in groups:
        vendors_of.setdefault(group, set()).add(vendor)
    held_out = {v.lower() for v in cfg.test_vendors}
    split: dict[str, str] = {}
    for group, vendors in sorted(vendors_of.items()):
        test = {v for v in vendors if v.lower() in held_out}
        if test and test != vendors:
            raise ConfigError(f"group '{group}' mixes a held-out vendor with others: {sorted(vendors)}",
                              "give those sources different groups")
        if test:
            split[group] = "test"
            if group in cfg.val_groups:
                raise ConfigError(f"group '{group}' is listed in val_groups but its vendor is held out for test")
        elif group in cfg.val_groups:
            split[group] = "val"
        else:
            split[group] = "train"
    if "train" not in split.values():
        raise ConfigError("no source left for training", "hold out fewer vendors or val groups")
    return split


def check_disjoint(samples: Iterable[Mapping[str, str]]) -> None:
    """Fail if any group or series appears in two splits (a guard on the written manifest)."""
    seen: dict[tuple[str, str], str] = {}
    for s in samples:
        for key in (("group", s["group"]), ("series_key", s["series_key"])):
            first = seen.setdefault(key, s["split"])
            if first != s["split"]:
                raise AssertionError(f"{key[0]} {key[1]} is in both {first} and {s['split']}")
