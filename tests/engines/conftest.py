"""Engine test fixtures: GPU/TensorRT skips, a fake installed engine."""

from __future__ import annotations

import importlib.util

import pytest


def _has_gpu() -> bool:
    if importlib.util.find_spec("cuda") is None:
        return False
    from mediqa.engines.backends.cuda_mem import gpu_count

    try:
        return gpu_count() > 0
    except Exception:  # noqa: BLE001 - any failure to probe means "no usable GPU" for skipping
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_trt = importlib.util.find_spec("tensorrt") is not None
    has_gpu = _has_gpu()
    for item in items:
        if "tensorrt" in item.keywords and not (has_trt and has_gpu):
            item.add_marker(pytest.mark.skip(reason="needs the tensorrt package and a CUDA GPU"))
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU and cuda-python"))


@pytest.fixture
def install_fake_engine():
    """Install a fake plan + manifest the way the builder does (plans are opaque bytes to the cache)."""
    from mediqa.engines.cache.key import BuildRecipe, cache_key, key_components
    from mediqa.engines.cache.manifest import Manifest
    from mediqa.engines.model_io import sha256_bytes

    def install(cache, gpu, *, model_sha="m" * 64, trt="10.9.0", plan=b"PLAN", passed=True, max_batch=6,
                failed=()):
        recipe = BuildRecipe.default(max_batch)
        key = cache_key(model_sha, recipe, trt, gpu)
        manifest = Manifest(key=key, components=key_components(model_sha, recipe, trt, gpu),
                            plan_sha256=sha256_bytes(plan), plan_bytes=len(plan), model={"name": "tiny"},
                            build={"time_utc": "2025-01-01T00:00:00+00:00"},
                            accuracy={"passed": passed, "failed": list(failed)})
        with cache.lock():
            cache.install(plan, manifest)
        return manifest

    return install
