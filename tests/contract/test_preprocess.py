"""The preprocessing contract: ranges, channels, crop placement and determinism, on real slices."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.select.saliency import select_slices
from mediqa.errors import ModelError
from mediqa.model_card import ModelCard, Preprocessing
from mediqa.preprocess import (
    CropPos,
    model_inputs,
    mr_norm_for,
    normalise,
    prepare,
    prompt_indices,
)

CARD = ModelCard()


def _chosen(layouts: dict[str, SeriesLayout], name: str) -> tuple[SeriesLayout, np.ndarray]:
    layout = layouts[name]
    return layout, layout.read_slices(select_slices(layout).indices)


def test_ct_windows_are_channels_in_unit_range() -> None:
    hu = np.array([[[-1000.0, -160.0, 40.0, 240.0, 3000.0]]], np.float32)  # [1, 1, 5]
    out = normalise(hu, "CT", CARD)
    assert out.shape == (1, 3, 1, 5) and out.dtype == np.float32
    soft = out[0, 0, 0]  # window (40, 400): -160 -> -1, 40 -> 0, 240 -> 1
    assert np.allclose(soft, [-1, -1, 0, 1, 1])
    assert np.allclose(out[0, 1, 0], [-1, -1, 0, 1, 1])  # (40, 80): 40 is the centre
    assert np.allclose(out[0, 2, 0, 2], (40 - (600 - 1400)) / 2800 * 2 - 1)


def test_mr_percentiles_per_slice_as_training_and_caller_norm() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 20, (3, 64, 64)).astype(np.float32)
    vol[2] *= 3  # a brighter slice normalises like the others: each slice on its own percentiles
    out = normalise(vol, "MR", CARD)
    assert out.shape == (3, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
    assert np.array_equal(out[:, 0], out[:, 2])  # repeated over the channels
    assert abs(out[2].mean() - out[0].mean()) < 0.05
    for k in range(3):  # identical to what training does with a sample's stored norm
        lo, hi = mr_norm_for(vol[k], CARD)
        assert np.allclose(normalise(vol[k:k + 1], "MR", CARD, mr_norm=(lo, hi)), out[k:k + 1])
    assert normalise(vol, "MR", CARD, mr_norm=(0.0, 2000.0)).max() < 0  # training's per-sample norm wins


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["dcm_qa_ct/In/GE", "dcm_qa_philips_enh/In/cl", "dcm_qa_nih/In/20180918GE/mr_0004"])
def test_crops_are_deterministic_on_the_body_and_in_range(name: str, shared_layouts: dict) -> None:
    layout, slices = _chosen(shared_layouts, name)
    pre = CARD.preprocessing
    batch, positions = prepare(slices, layout.modality, CARD)
    assert batch.shape == (len(slices) * pre.crops_per_slice, pre.channels, pre.crop_size, pre.crop_size)
    assert batch.dtype == np.float32 and batch.min() >= -1 and batch.max() <= 1
    assert [p.slice for p in positions] == [k for k in range(len(slices)) for _ in range(pre.crops_per_slice)]
    again, positions2 = prepare(slices, layout.modality, CARD)
    assert np.array_equal(batch, again) and positions == positions2
    norm = normalise(slices, layout.modality, CARD)
    h, w = slices.shape[1:]
    if min(h, w) < pre.crop_size:  # a small slice sits whole in the middle of its padded crop
        top, left = (pre.crop_size - h) // 2, (pre.crop_size - w) // 2
        assert np.array_equal(batch[0, :, top:top + h, left:left + w], norm[0])
        return
    # On the body: a crop holds much more tissue than the slice on average (background is -1).
    tissue = (batch[:, 0] > -0.8).mean()
    whole = (norm[:, 0] > -0.8).mean()
    assert tissue >= min(0.95, 1.3 * whole), (tissue, whole)
    if min(slices.shape[1:]) >= 2 * pre.crop_size:  # room for separate crops: no two coincide
        for k in range(len(slices)):
            assert len({(p.y, p.x) for p in positions if p.slice == k}) == pre.crops_per_slice


def test_small_slices_are_padded_and_positions_replay() -> None:
    small = np.full((2, 40, 50), 100.0, np.float32)
    batch = model_inputs(small, "MR", CARD)
    assert batch.shape == (8, 3, 96, 96)
    assert (batch == -1).any()  # padding reads as background
    ct = np.random.default_rng(1).normal(0, 300, (2, 200, 200)).astype(np.float32)
    given = [CropPos(0, 10, 20), CropPos(1, 100, 0)]
    out = model_inputs(ct, "CT", CARD, positions=given)
    assert out.shape == (2, 3, 96, 96)
    assert np.allclose(out[1], normalise(ct, "CT", CARD)[1, :, 100:196, 0:96])
    a = model_inputs(ct, "CT", CARD, rng=np.random.default_rng(5))
    b = model_inputs(ct, "CT", CARD, rng=np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_contract_errors() -> None:
    with pytest.raises(ValueError):
        normalise(np.zeros((2, 2)), "CT", CARD)
    with pytest.raises(ValueError):
        normalise(np.zeros((1, 2, 2)), "US", CARD)
    bad = ModelCard(preprocessing=Preprocessing(channels=2))
    with pytest.raises(ModelError):
        normalise(np.zeros((1, 2, 2)), "CT", bad)
    for modality in ("CT", "MR"):  # prepare says the same
        with pytest.raises(ModelError):
            prepare(np.zeros((1, 2, 2)), modality, bad)
    with pytest.raises(ValueError):
        prepare(np.zeros((1, 2, 2)), "US", CARD)
    with pytest.raises(ValueError):
        prepare(np.zeros((2, 2)), "MR", CARD)


def test_prompt_indices() -> None:
    idx = prompt_indices({"dimension": "3D", "modality": "MR", "anatomy": "head", "image_type": "T1"}, CARD)
    assert idx.dtype == np.int64 and idx.shape == (4,)
    vocab = CARD.vocabulary
    fields = ("dimension", "modality", "anatomy", "image_type")
    assert [vocab[f][i] for f, i in zip(fields, idx, strict=True)] == ["3D", "MR", "head", "T1"]
    assert prompt_indices({"anatomy": "spleen"}, CARD).tolist() == [0, 0, 0, 0]



def _cut_from_whole(slices: np.ndarray, modality: str, positions: list[CropPos],
                    mr_norm: tuple[float, float] | None = None) -> np.ndarray:
    """The contract's definition of a crop: cut from the whole normalised slice, padded with PAD_VALUE."""
    size = CARD.preprocessing.crop_size
    norm = normalise(slices, modality, CARD, mr_norm)
    h, w = norm.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    norm = np.pad(norm, [(0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)], constant_values=-1.0)
    return np.stack([norm[p.slice, :, p.y:p.y + size, p.x:p.x + size] for p in positions])


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize("shape", [(3, 200, 170), (2, 40, 300), (1, 96, 96)])
def test_crops_equal_cuts_of_the_whole_normalised_slice(modality: str, shape: tuple[int, int, int]) -> None:
    """``prepare`` may normalise only what it cuts (cheaper), never anything else: bit for bit, with the
    padding, NaN and infinite pixels, given positions and training's random placement."""
    rng = np.random.default_rng(3)
    slices = rng.normal(0 if modality == "CT" else 300, 300, shape)  # float64, as decoded slices can be
    slices[0, 5, 7], slices[-1, -3, -2], slices[0, -1, 0] = np.nan, np.inf, -np.inf
    for kwargs in ({}, {"rng": np.random.default_rng(9)}, {"mr_norm": (0.0, 900.0)} if modality == "MR" else {}):
        batch, positions = prepare(slices, modality, CARD, **kwargs)  # type: ignore[arg-type]
        expected = _cut_from_whole(slices, modality, positions, kwargs.get("mr_norm"))  # type: ignore[arg-type]
        assert batch.dtype == np.float32 and batch.shape == expected.shape
        assert np.array_equal(batch, expected, equal_nan=True)
        again, _ = prepare(slices, modality, CARD, positions=positions, mr_norm=kwargs.get("mr_norm"))  # type: ignore[arg-type]
        assert np.array_equal(again, expected, equal_nan=True)
