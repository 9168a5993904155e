"""Training and evaluation feed the model exactly what the agent's preprocessing produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_dataset import make_dataset

from mediqa.model_card import ModelCard, Preprocessing
from mediqa.preprocess import PAD_VALUE, prepare, prompt_indices
from mediqa.training.predict import predict_samples
from mediqa.training.trainset import BuiltDataSet, CropDataset, open_dataset, sample_crops

CARD = ModelCard(preprocessing=Preprocessing(crop_size=32, crops_per_slice=3))


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> BuiltDataSet:
    return open_dataset(make_dataset(tmp_path_factory.mktemp("inputs")))


def _first(ds: BuiltDataSet, modality: str) -> int:
    return next(s["index"] for s in ds.samples if s["modality"] == modality)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_eval_crops_are_the_agents(ds: BuiltDataSet, modality: str) -> None:
    i = _first(ds, modality)
    norm = ds.samples[i]["norm"]
    expected, _ = prepare(np.asarray(ds.images[i])[None], modality, CARD,
                          mr_norm=tuple(norm) if norm is not None else None)
    got = sample_crops(ds, i, CARD, "crops")
    assert got.shape == (3, 3, 32, 32) and np.array_equal(got, expected)


def test_mr_uses_the_samples_norm(ds: BuiltDataSet) -> None:
    """The stored ``norm`` (percentiles of the full degraded slice) wins over the crop's own percentiles."""
    i = _first(ds, "MR")
    ds.samples[i]["norm"] = [0.0, 1e6]  # absurd range: everything maps near -1
    try:
        assert sample_crops(ds, i, CARD, "crops").max() < -0.99
    finally:
        ds.samples[i]["norm"] = [float(v) for v in np.percentile(ds.images[i], [0.5, 99.5])]


def test_training_items_are_random_agent_crops(ds: BuiltDataSet) -> None:
    idx = ds.split("train")[:4]
    a = CropDataset(ds, idx, CARD, seed=1)
    b = CropDataset(ds, idx, CARD, seed=2)
    image, prompt, target, quality = a[0]
    assert tuple(image.shape) == (3, 32, 32) and float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    assert np.array_equal(prompt.numpy(), prompt_indices(ds.samples[idx[0]]["prompt"], CARD))
    assert quality.item() == pytest.approx(ds.samples[idx[0]]["quality"])
    assert any(not np.array_equal(a[k][0].numpy(), b[k][0].numpy()) for k in range(len(idx)))


def test_small_stored_images_pad_like_the_agent(tmp_path: Path) -> None:
    """A stored image smaller than the crop is padded with the agent's PAD_VALUE (not edge values)."""
    small = open_dataset(make_dataset(tmp_path, n_series=2, size=24))
    i = _first(small, "CT")
    crops = sample_crops(small, i, CARD, "crops")
    assert crops.shape == (3, 3, 32, 32)
    assert np.all(crops[:, :, 0, :] == PAD_VALUE) and np.all(crops[:, :, :, 0] == PAD_VALUE)


def test_slice_score_is_the_mean_of_its_consecutive_crops(ds: BuiltDataSet) -> None:
    idx = ds.split("test")[:5]
    assert idx
    seen: list[np.ndarray] = []

    def run(image: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(image)
        per_crop = image.mean(axis=(1, 2, 3))
        return per_crop, np.stack([per_crop, -per_crop], axis=1)

    q, p = predict_samples(run, ds, idx, CARD, batch=4)
    crops = np.concatenate(seen)
    assert len(crops) == 3 * len(idx)
    expected = np.array([sample_crops(ds, i, CARD, "crops").mean(axis=(1, 2, 3)).mean() for i in idx])
    assert np.allclose(q, expected, atol=1e-6) and np.allclose(p[:, 1], -expected, atol=1e-6)
    one, _ = predict_samples(run, ds, idx, CARD, crops=1)
    assert one.shape == (len(idx),)


def test_recipe_input_is_one_whole_image(ds: BuiltDataSet) -> None:
    out = sample_crops(ds, 0, CARD, "recipe")
    assert out.shape == (1, 3, 32, 32) and out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)
