"""Data config validation and split assignment: mistakes fail early with the fix in the message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_paths import DEFAULT_CONFIG, TINY_CONFIG

from mediqa.errors import ConfigError
from mediqa.training.datagen.config import SplitConfig, load_data_config
from mediqa.training.datagen.splits import assign_splits, check_disjoint


def test_shipped_configs_load() -> None:
    for path in (TINY_CONFIG, DEFAULT_CONFIG):
        cfg = load_data_config(path)
        assert cfg.sources and cfg.splits.test_vendors


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nsources: [{name: a, kind: mni152, modality: MR}]\nct: {dose_fraction: [1]}\n")
    with pytest.raises(ConfigError, match="did you mean 'ct.dose_fractions'"):
        load_data_config(path)


def test_sparse_views_must_divide_the_projection_views(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{name: a, kind: mni152, modality: MR}]\nct: {projection_views: 360, "
                    "sparse_views: [64]}\n")
    with pytest.raises(ConfigError, match="must divide"):
        load_data_config(path)


def test_splits_by_group_and_vendor() -> None:
    pairs = [("ge_ct", "GE"), ("ph_5mm", "Philips"), ("ph_5mm", "Philips"), ("sie", "Siemens"), ("tosh", "Toshiba")]
    split = assign_splits(pairs, SplitConfig(test_vendors=("GE",), val_groups=("tosh",)))
    assert split == {"ge_ct": "test", "ph_5mm": "train", "sie": "train", "tosh": "val"}
    with pytest.raises(ConfigError, match="mixes a held-out vendor"):
        assign_splits([("g", "GE"), ("g", "Philips")], SplitConfig(test_vendors=("GE",)))
    with pytest.raises(ConfigError, match="no source left for training"):
        assign_splits([("g", "GE")], SplitConfig(test_vendors=("GE",)))


def test_disjointness_guard_catches_a_cut_series() -> None:
    with pytest.raises(AssertionError, match="both train and test"):
        check_disjoint([{"group": "a", "series_key": "s1", "split": "train"},
                        {"group": "a", "series_key": "s1", "split": "test"}])


def test_small_slices_are_padded_with_nothing_not_water() -> None:
    from mediqa.training.datagen.sample import PAD_FILL, centre_crop

    ct = np.full((128, 128), 40.0, np.float32)
    out, pad = centre_crop(ct, 160, PAD_FILL["CT"])
    assert out.shape == (160, 160) and pad == [[16, 16], [16, 16]]
    assert out[0, 0] == -1000.0 and out[80, 80] == 40.0  # air around a CT slice, not 0 HU (water)
    big, pad = centre_crop(np.arange(200 * 200, dtype=np.float32).reshape(200, 200), 160, PAD_FILL["CT"])
    assert pad is None and big[0, 0] == 20 * 200 + 20  # larger slices are centre-cropped, not padded
