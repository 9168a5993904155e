"""Cache keys: same inputs -> same key; change any one component -> a new key."""

from __future__ import annotations

import dataclasses

from mediqa.engines.cache.key import BuildRecipe, cache_key, series_batch
from mediqa.engines.gpu import GpuIdentity

GPU = GpuIdentity(0, "NVIDIA L4", (8, 9), 58, 22478, "cuda-python")
RECIPE = BuildRecipe.default(28)
BASE = ("a" * 64, RECIPE, "10.9.0", GPU)


def test_key_is_stable_and_hex():
    assert cache_key(*BASE) == cache_key(*BASE)
    assert len(cache_key(*BASE)) == 64 and int(cache_key(*BASE), 16) >= 0


def test_gpu_index_and_probe_source_do_not_change_the_key():
    other = dataclasses.replace(GPU, index=3, source="test")
    assert cache_key("a" * 64, RECIPE, "10.9.0", other) == cache_key(*BASE)


def test_every_component_changes_the_key():
    variants = [
        ("b" * 64, RECIPE, "10.9.0", GPU),
        ("a" * 64, BuildRecipe.default(28, typing="flag"), "10.9.0", GPU),
        ("a" * 64, BuildRecipe.default(14), "10.9.0", GPU),
        ("a" * 64, dataclasses.replace(RECIPE, fp32_ops=RECIPE.fp32_ops[1:]), "10.9.0", GPU),
        ("a" * 64, RECIPE, "11.0.0", GPU),
        ("a" * 64, RECIPE, "10.9.0", dataclasses.replace(GPU, name="NVIDIA A10")),
        ("a" * 64, RECIPE, "10.9.0", dataclasses.replace(GPU, compute_capability=(8, 6))),
        ("a" * 64, RECIPE, "10.9.0", dataclasses.replace(GPU, sm_count=60)),
        ("a" * 64, RECIPE, "10.9.0", dataclasses.replace(GPU, total_memory_mib=24000)),
    ]
    keys = {cache_key(*v) for v in variants} | {cache_key(*BASE)}
    assert len(keys) == len(variants) + 1


def test_recipe_round_trips_through_json_dict():
    assert BuildRecipe.from_dict(RECIPE.to_dict()) == RECIPE
    assert "LayerNormalization" in RECIPE.fp32_ops and "Softmax" in RECIPE.fp32_ops


def test_series_batch_from_card():
    class Pre:
        crops_per_slice = 4

    class Card:
        preprocessing = Pre()

    assert series_batch(Card(), 7) == 28
    assert series_batch(None, 7) == 7
