"""CUDA memory and streams through cuda-python, the way NVIDIA's current TensorRT samples do it.

``from cuda.bindings import runtime as cudart`` (cuda-python >= 12.6; the old ``from cuda import cudart``
was removed in cuda-bindings 13, it is tried second for 12.x installs). Every call returns a tuple whose
first item is a ``cudaError_t``; :func:`check` turns failures into exceptions with the CUDA error name.
Host buffers are page-locked (``cudaMallocHost``) so ``cudaMemcpyAsync`` is truly asynchronous on our
one stream (https://nvidia.github.io/cuda-python/cuda-bindings/latest/module/runtime.html;
TensorRT samples/python/common_runtime.py).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

from mediqa.errors import Skip

logger = logging.getLogger(__name__)


class CudaError(RuntimeError):
    """A CUDA runtime call failed (a bug or a broken driver/GPU, not a user error)."""


def load_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 12.x layout
        except ImportError:
            raise Skip("package", "cuda-python is not installed",
                       "pip install cuda-python (part of the 'gpu' extra)") from None
    return cudart


def check(result: Any, what: str = "CUDA call") -> Any:
    """Unpack ``(err, *values)``; raise on error, return the single value (or tuple / None)."""
    cudart = load_cudart()
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(err)[1]
        text = cudart.cudaGetErrorString(err)[1]
        raise CudaError(f"{what} failed: {_text(name)} ({_text(text)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def set_device(index: int) -> None:
    check(load_cudart().cudaSetDevice(index), f"cudaSetDevice({index})")


class CudaStream:
    """One stream per backend: copies and ``execute_async_v3`` are ordered on it."""

    def __init__(self) -> None:
        self._cudart = load_cudart()
        self._stream: Any = check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")

    @property
    def handle(self) -> int:
        return int(self._stream)

    @property
    def raw(self) -> Any:
        return self._stream

    def synchronize(self) -> None:
        check(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self._stream is not None:
            check(self._cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None


class HostDeviceBuffer:
    """A pinned host buffer and a device buffer of the same size, for one I/O tensor.

    Sized once for the largest shape of the engine's profile; each call uses a prefix of it.
    """

    def __init__(self, nbytes: int, dtype: np.dtype) -> None:
        self._cudart = load_cudart()
        self.nbytes = max(int(nbytes), int(dtype.itemsize))
        self.dtype = np.dtype(dtype)
        self.host_ptr: int = int(check(self._cudart.cudaMallocHost(self.nbytes), "cudaMallocHost"))
        try:
            self.device_ptr: int = int(check(self._cudart.cudaMalloc(self.nbytes), "cudaMalloc"))
        except CudaError:
            check(self._cudart.cudaFreeHost(self.host_ptr), "cudaFreeHost")
            raise
        raw = (ctypes.c_ubyte * self.nbytes).from_address(self.host_ptr)
        self._host_bytes = np.frombuffer(memoryview(raw), dtype=np.uint8)  # shares the pinned memory

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy view of the first ``prod(shape)`` items of the pinned buffer (no copy)."""
        count = int(np.prod(shape, dtype=np.int64))
        need = count * self.dtype.itemsize
        if need > self.nbytes:
            raise ValueError(f"shape {shape} needs {need} bytes, buffer holds {self.nbytes}")
        return self._host_bytes[:need].view(self.dtype).reshape(shape)

    def to_device(self, nbytes: int, stream: CudaStream) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self._cudart.cudaMemcpyAsync(self.device_ptr, self.host_ptr, nbytes, kind, stream.raw),
              "cudaMemcpyAsync H2D")

    def to_host(self, nbytes: int, stream: CudaStream) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(self._cudart.cudaMemcpyAsync(self.host_ptr, self.device_ptr, nbytes, kind, stream.raw),
              "cudaMemcpyAsync D2H")

    def free(self) -> None:
        if self.device_ptr:
            check(self._cudart.cudaFree(self.device_ptr), "cudaFree")
            self.device_ptr = 0
        if self.host_ptr:
            self._host_bytes = np.empty(0, np.uint8)
            check(self._cudart.cudaFreeHost(self.host_ptr), "cudaFreeHost")
            self.host_ptr = 0


def gpu_count() -> int:
    """Number of CUDA GPUs cuda-python sees; 0 when the driver is missing or too old."""
    cudart = load_cudart()
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        logger.debug("cudaGetDeviceCount: %s", _text(cudart.cudaGetErrorName(err)[1]))
        return 0
    return int(count)
