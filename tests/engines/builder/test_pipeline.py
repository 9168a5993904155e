"""Build pipeline on a machine without TensorRT: FP16 ONNX made and checked, then a clear refusal."""

from __future__ import annotations

import sys

import pytest

from mediqa.engines.builder.pipeline import build_engine, check_fp16
from mediqa.engines.cache.store import EngineCache
from mediqa.errors import CannotBuildHere, ModelError


def test_check_fp16_writes_and_gates_the_fp16_onnx(tiny_onnx, golden, tmp_path):
    result = check_fp16(tiny_onnx, EngineCache(tmp_path), golden)
    assert result.path.is_file() and result.path.parent == tmp_path / "fp16"
    assert result.gate.passed and result.gate.retake_below == 2.0  # from the model card


def test_build_without_tensorrt_explains_after_fp16(tiny_onnx, golden, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(CannotBuildHere) as info:
        build_engine(tiny_onnx, EngineCache(tmp_path), golden)
    text = str(info.value)
    assert "cannot build a TensorRT engine on this machine" in text
    assert "tensorrt package is not installed" in text
    assert "FP16 ONNX was written to" in text and "same decisions" in text
    assert list((tmp_path / "fp16").glob("*.fp16.onnx"))
    assert not (tmp_path / "entries").exists()


def test_golden_set_for_another_model_is_refused(tiny_onnx, tmp_path):
    import numpy as np

    from mediqa.engines.gate.golden import golden_from_inputs

    other = golden_from_inputs([("a", {"pixels": np.zeros((1, 2), np.float32)}, "clean")], {})
    with pytest.raises(ModelError, match="do not match"):
        check_fp16(tiny_onnx, EngineCache(tmp_path), other)
