"""Real TensorRT: build the tiny model, gate it, run it. Runs only where tensorrt and a GPU exist."""

from __future__ import annotations

import pytest

from mediqa.engines.builder.pipeline import build_engine
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.chain import select_backend


@pytest.mark.tensorrt
def test_build_gate_install_and_run(tiny_onnx, golden, tmp_path):
    cache = EngineCache(tmp_path)
    outcome = build_engine(tiny_onnx, cache, golden, slices=3)
    assert outcome.manifest.gate_passed and outcome.manifest.layer_precisions["counts"]
    assert build_engine(tiny_onnx, cache, golden, slices=3).up_to_date
    backend, skipped = select_backend(tiny_onnx, ("tensorrt",), engine_cache=tmp_path, slices=3)
    with backend:
        out = backend.infer(golden.cases[0].inputs)
    assert backend.name == "tensorrt" and not skipped and out["quality"].shape == (6,)
