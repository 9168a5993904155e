"""Model outputs kept per slice by their exact input: only slices not seen before go to the model, and a
series' outputs are those of one full pass."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mediqa.agent.config import load_config
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.pipeline import analyse_series, series_input
from mediqa.agent.scoring.learned import LearnedScorer
from mediqa.agent.scoring.slice_outputs import SliceOutputs


class Model:
    """Per-crop outputs that depend on each crop and its prompt row; counts what it is fed."""

    def __init__(self) -> None:
        self.fed: list[int] = []

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image, prompt = feed["image"], feed["prompt"]
        self.fed.append(len(image))
        quality = image.reshape(len(image), -1).mean(axis=1) + prompt.sum(axis=1)
        physics = np.stack([image.reshape(len(image), -1).max(axis=1), prompt[:, 0].astype(np.float64)], axis=1)
        return {"quality": quality[:, None], "physics": physics}


def _batch(slices: int, per_slice: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    crops = np.random.default_rng(seed).normal(size=(slices * per_slice, 3, 8, 8)).astype(np.float32)
    prompt = np.tile(np.array([1, 2, 3, 4], np.int64), (len(crops), 1))
    return crops, prompt, np.repeat(np.arange(slices), per_slice)


def test_a_second_pass_sends_only_the_slices_not_seen_and_gives_a_full_pass_outputs():
    crops, prompt, owner = _batch(7)
    model, store = Model(), SliceOutputs()
    first = store.run(model, crops, prompt, owner)
    changed = crops.copy()
    changed[8:12] += 1.0  # the third slice's crops differ (another file, or the same file rewritten)
    second = store.run(model, changed, prompt, owner)
    assert model.fed == [28, 4]
    full = Model()({"image": changed, "prompt": prompt})
    for name in ("quality", "physics"):
        np.testing.assert_array_equal(second[name], full[name])
    np.testing.assert_array_equal(first["quality"][:8], second["quality"][:8])


def test_the_same_input_again_needs_no_model_pass_and_another_prompt_does():
    crops, prompt, owner = _batch(3)
    model, store = Model(), SliceOutputs()
    store.run(model, crops, prompt, owner)
    store.run(model, crops, prompt, owner)
    assert model.fed == [12]
    other = prompt.copy()
    other[:, 2] = 0  # another anatomy: another model input
    store.run(model, crops, other, owner)
    assert model.fed == [12, 12]


def test_a_batch_the_backend_refuses_passes_every_slice_and_an_unordered_batch_is_not_reused():
    crops, prompt, owner = _batch(7)
    model, store = Model(), SliceOutputs()
    store.run(model, crops[:24], prompt[:24], owner[:24])  # six of the seven slices kept
    store.run(model, crops, prompt, owner, batch_ok=lambda n: n >= 8)  # four crops left: below the profile
    assert model.fed == [24, 28]
    shuffled = np.array([0, 1, 0, 1])
    store.run(model, crops[:4], prompt[:4], shuffled)
    assert model.fed == [24, 28, 4]


def test_the_store_keeps_the_newest_slices_only():
    model, store = Model(), SliceOutputs(kept=5)
    crops, prompt, owner = _batch(7)
    store.run(model, crops, prompt, owner)
    assert len(store) == 5
    store.run(model, crops, prompt, owner)
    assert model.fed == [28, 8]  # the two oldest slices were dropped: passed again


@pytest.mark.slow
def test_a_primed_series_is_scored_without_a_model_pass_and_as_a_fresh_scorer_scores_it(tmp_path, shared_dicom):
    cfg = dataclasses.replace(load_config(), state_dir=str(tmp_path / "state"))
    (records,) = scan_tree(shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010").values()
    fresh = LearnedScorer.from_config(cfg)
    primed = LearnedScorer.from_config(cfg)
    try:
        expected = analyse_series(records, fresh, cfg).result
        inputs = series_input(analyse_series(records, fresh, cfg).layout, slices=cfg.scoring.slices,
                              selection=cfg.scoring.selection)
        assert primed.prime(inputs) == len(inputs.selection.indices)
        assert primed.prime(inputs) == 0
        before = primed.outputs.passed_crops
        got = analyse_series(records, primed, cfg).result
        assert primed.outputs.passed_crops == before  # no model pass at scoring
    finally:
        fresh.close()
        primed.close()
    assert got.decision == expected.decision
    np.testing.assert_allclose(got.slice_scores, expected.slice_scores, rtol=0, atol=1e-5)
    assert got.measures.keys() == expected.measures.keys()
    for name, value in expected.measures.items():
        assert got.measures[name] == pytest.approx(value, abs=1e-5)
