"""ONNX Runtime backends and the base class's feed checks."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa.engines.backends.onnxrt import OrtBackend
from mediqa.errors import ModelError, Skip


def test_cpu_backend_runs_and_reports_specs(tiny_onnx, golden):
    with OrtBackend(tiny_onnx, threads=1) as backend:
        assert set(backend.input_specs) == {"image", "prompt"}
        assert backend.output_names == ("quality", "physics")
        out = backend.infer(golden.cases[0].inputs)
    assert out["quality"].shape == (6,) and out["physics"].shape == (6, 2)
    assert not backend.loaded


@pytest.mark.parametrize(("feed_change", "message"), [
    (lambda f: f.pop("prompt"), "model inputs are"),
    (lambda f: f.__setitem__("image", f["image"].astype(np.float64)), "must be float32"),
    (lambda f: f.__setitem__("image", f["image"][:, :2]), "axis 1 must be 3"),
    (lambda f: f.__setitem__("prompt", f["prompt"][:2]), "disagree on the batch"),
    (lambda f: f.__setitem__("image", f["image"][0]), "must have shape"),
])
def test_feed_checks(tiny_onnx, golden, feed_change, message):
    feed = dict(golden.cases[0].inputs)
    feed_change(feed)
    with OrtBackend(tiny_onnx) as backend, pytest.raises(ModelError, match=message):
        backend.infer(feed)


def test_infer_before_load_is_a_bug(tiny_onnx, golden):
    with pytest.raises(RuntimeError, match="before load"):
        OrtBackend(tiny_onnx).infer(golden.cases[0].inputs)


def test_cuda_backend_refuses_without_cuda_provider(tiny_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(Skip, match="no CUDAExecutionProvider") as info:
        OrtBackend(tiny_onnx, "cuda").load()
    assert info.value.kind == "package"


def test_unloadable_model_is_a_load_skip(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(Skip) as info:
        OrtBackend(bad).load()
    assert info.value.kind == "load"
