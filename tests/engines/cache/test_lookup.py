"""find_engine: the right plan, or a reason an engineer can act on."""

from __future__ import annotations

import dataclasses

import pytest

from mediqa.engines.cache.lookup import find_engine
from mediqa.engines.cache.manifest import PLAN_NAME
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.gpu import GpuIdentity
from mediqa.errors import Skip

L4 = GpuIdentity(0, "NVIDIA L4", (8, 9), 58, 22478, "cuda-python")
A10 = GpuIdentity(0, "NVIDIA A10", (8, 6), 72, 22731, "cuda-python")
MODEL = "m" * 64


def test_finds_the_matching_engine(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    install_fake_engine(cache, A10, plan=b"a10")
    install_fake_engine(cache, L4, plan=b"l4")
    plan, manifest = find_engine(cache, MODEL, "10.9.0", L4, need_batch=6)
    assert plan == b"l4" and manifest.sm == "sm_89"


def test_no_engine_at_all(tmp_path):
    with pytest.raises(Skip, match="no TensorRT engine for this model") as info:
        find_engine(EngineCache(tmp_path), MODEL, "10.9.0", L4, 6)
    assert info.value.kind == "engine" and "mediqa engine build" in str(info.value)


def test_engine_for_another_gpu_names_both(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    install_fake_engine(cache, A10)
    with pytest.raises(Skip) as info:
        find_engine(cache, MODEL, "10.9.0", L4, 6)
    text = str(info.value)
    assert "engine built for sm_86" in text and "this GPU is sm_89" in text and "mediqa engine build" in text


def test_engine_for_another_tensorrt(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    install_fake_engine(cache, L4, trt="10.3.0")
    with pytest.raises(Skip, match="TensorRT 10.3.0, this machine has TensorRT 10.9.0"):
        find_engine(cache, MODEL, "10.9.0", L4, 6)


def test_same_name_other_sm_count_is_another_gpu(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    install_fake_engine(cache, dataclasses.replace(L4, sm_count=60))
    with pytest.raises(Skip, match="engine built for"):
        find_engine(cache, MODEL, "10.9.0", L4, 6)


def test_failed_gate_is_reported_as_gate(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    install_fake_engine(cache, L4, passed=False, failed=("ct-head-noisy",))
    with pytest.raises(Skip, match="failed the accuracy gate.*ct-head-noisy") as info:
        find_engine(cache, MODEL, "10.9.0", L4, 6)
    assert info.value.kind == "gate"


def test_profile_too_small_for_the_series(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    install_fake_engine(cache, L4, max_batch=6)
    with pytest.raises(Skip, match="up to 6, a series needs 28"):
        find_engine(cache, MODEL, "10.9.0", L4, 28)


def test_tampered_plan_is_never_returned(tmp_path, install_fake_engine):
    cache = EngineCache(tmp_path)
    manifest = install_fake_engine(cache, L4)
    (cache.entry_dir(manifest.key) / PLAN_NAME).write_bytes(b"EVIL")
    with pytest.raises(Skip, match="refusing") as info:
        find_engine(cache, MODEL, "10.9.0", L4, 6)
    assert info.value.kind == "engine"
