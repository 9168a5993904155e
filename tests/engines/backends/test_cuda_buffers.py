"""cuda-python buffers and stream (GPU), and their behaviour where cuda-python is absent (CPU)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mediqa.engines.backends.cuda_mem import load_cudart
from mediqa.errors import Skip


def test_missing_cuda_python_is_a_package_skip(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(Skip, match="cuda-python is not installed") as info:
        load_cudart()
    assert info.value.kind == "package"


@pytest.mark.gpu
def test_pinned_device_round_trip_on_one_stream():
    from mediqa.engines.backends.cuda_mem import CudaStream, HostDeviceBuffer, set_device

    set_device(0)
    data = np.arange(6 * 3 * 32 * 32, dtype=np.float32).reshape(6, 3, 32, 32)
    stream = CudaStream()
    buf = HostDeviceBuffer(data.nbytes * 2, data.dtype)  # larger than needed, as for a profile's max shape
    try:
        np.copyto(buf.host_view(data.shape), data)
        buf.to_device(data.nbytes, stream)
        buf.host_view(data.shape)[...] = 0
        buf.to_host(data.nbytes, stream)
        stream.synchronize()
        np.testing.assert_array_equal(buf.host_view(data.shape), data)
    finally:
        buf.free()
        stream.destroy()


@pytest.mark.gpu
def test_gpu_identity_from_cuda_python():
    from mediqa.engines.gpu import probe_gpu

    gpu = probe_gpu(0, allow_smi=False)
    assert gpu.source == "cuda-python" and gpu.sm_count and gpu.sm.startswith("sm_")
