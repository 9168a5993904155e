"""The fallback chain with missing / fake tensorrt: who runs, why the others were skipped."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from mediqa.engines import chain
from mediqa.engines.chain import select_backend
from mediqa.engines.gpu import GpuIdentity
from mediqa.errors import BackendUnavailable, ConfigError

L4 = GpuIdentity(0, "NVIDIA L4", (8, 9), 58, 22478, "cuda-python")


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # "import tensorrt" raises ImportError


@pytest.fixture
def fake_gpu_stack(monkeypatch):
    """tensorrt and cuda-python 'installed', one L4 GPU: the chain then gets as far as the engine cache."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.9.0"))
    monkeypatch.setattr("mediqa.engines.backends.cuda_mem.load_cudart", lambda: types.SimpleNamespace())
    monkeypatch.setattr("mediqa.engines.gpu.probe_gpu", lambda index=0, allow_smi=True: L4)


def test_falls_back_to_cpu_and_says_why(tiny_onnx, no_tensorrt, caplog):
    caplog.set_level(logging.INFO, logger="mediqa.engines.chain")
    backend, skipped = select_backend(tiny_onnx, threads=1)
    with backend:
        assert backend.name == "onnxruntime-cpu"
    assert [(s.backend, s.kind) for s in skipped][0] == ("tensorrt", "package")
    assert "tensorrt package is not installed" in skipped[0].message
    assert skipped[1].backend == "onnxruntime-cuda"
    [line] = [r.getMessage() for r in caplog.records if "inference backend" in r.getMessage()]
    assert "onnxruntime-cpu" in line and "tensorrt skipped" in line


def test_no_gpu_is_a_gpu_skip(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.9.0"))
    monkeypatch.setattr("mediqa.engines.backends.cuda_mem.load_cudart", lambda: types.SimpleNamespace())

    def no_gpu(index=0, allow_smi=True):
        raise BackendUnavailable("no CUDA GPU found: driver missing")

    monkeypatch.setattr("mediqa.engines.gpu.probe_gpu", no_gpu)
    _, skipped = select_backend(tiny_onnx, ("tensorrt", "onnxruntime-cpu"), engine_cache="/nonexistent")
    assert skipped[0].kind == "gpu" and "driver missing" in skipped[0].message


def test_missing_engine_is_a_maintenance_warning_not_a_crash(tiny_onnx, fake_gpu_stack, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    backend, skipped = select_backend(tiny_onnx, engine_cache=tmp_path / "engines")
    backend.close()
    assert backend.name == "onnxruntime-cpu"
    assert skipped[0].kind == "engine" and "mediqa engine build" in str(skipped[0])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "maintenance" in r.getMessage()]
    assert len(warnings) == 1 and "run `mediqa engine build`" in warnings[0].getMessage()
    assert not (tmp_path / "engines" / "entries").exists()  # never builds on its own


def test_engine_for_other_gpu_reason_reaches_the_caller(tiny_onnx, fake_gpu_stack, tmp_path, install_fake_engine):
    from mediqa.engines.cache.store import EngineCache
    from mediqa.engines.model_io import sha256_file

    a10 = GpuIdentity(0, "NVIDIA A10", (8, 6), 72, 22731, "cuda-python")
    install_fake_engine(EngineCache(tmp_path), a10, model_sha=sha256_file(tiny_onnx), max_batch=14)
    _, skipped = select_backend(tiny_onnx, ("tensorrt", "onnxruntime-cpu"), engine_cache=tmp_path)
    assert "engine built for sm_86" in skipped[0].message and "this GPU is sm_89" in skipped[0].message


def test_build_engines_without_golden_set_explains(tiny_onnx, fake_gpu_stack, tmp_path):
    _, skipped = select_backend(tiny_onnx, ("tensorrt", "onnxruntime-cpu"), engine_cache=tmp_path,
                                build_engines=True)
    assert "no golden set" in skipped[0].message


def test_nothing_works_lists_every_reason(tiny_onnx, no_tensorrt, monkeypatch):
    def broken(ctx):
        raise chain.Skip("package", "onnxruntime is not installed", "pip install onnxruntime")

    monkeypatch.setitem(chain._FACTORIES, "onnxruntime-cpu", broken)
    with pytest.raises(BackendUnavailable) as info:
        select_backend(tiny_onnx)
    text = str(info.value)
    for name in ("tensorrt:", "onnxruntime-cuda:", "onnxruntime-cpu: onnxruntime is not installed"):
        assert name in text


def test_unknown_backend_is_a_config_error(tiny_onnx):
    with pytest.raises(ConfigError, match="tensorrtt"):
        select_backend(tiny_onnx, ("tensorrtt",))
