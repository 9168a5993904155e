"""TensorRT runtime backend: deserialize a verified plan, bind pinned/device buffers, run on one stream.

TensorRT >= 10 execution by tensor name: ``set_input_shape`` for each input, ``set_tensor_address`` for
every I/O tensor, then ``execute_async_v3(stream)``
(https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html).
Buffers are allocated once for the profile's largest shapes, so addresses are set once at load.
The backend runs a warm-up inference at the profile's optimal shape before it reports ready: the first
call pays for lazy CUDA module loading, which must not land on the first clinical series.
Plans come only from :class:`~mediqa.engines.cache.store.EngineCache` (hash-checked): a plan is code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from mediqa.engines.backends.base import Backend
from mediqa.engines.backends.cuda_mem import CudaError, CudaStream, HostDeviceBuffer, load_cudart, set_device
from mediqa.engines.model_io import TensorSpec
from mediqa.errors import Skip

logger = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise Skip("package", "the tensorrt package is not installed",
                   "install TensorRT 10/11 for this CUDA version (pip install tensorrt) on a GPU machine") from None
    return tensorrt


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, plan: bytes, gpu_index: int = 0, label: str = "", warmup: bool = True) -> None:
        super().__init__()
        self._plan = plan
        self.gpu_index = gpu_index
        self.label = label
        self.warmup = warmup
        self._trt: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: CudaStream | None = None
        self._buffers: dict[str, HostDeviceBuffer] = {}
        self._opt_shapes: dict[str, tuple[int, ...]] = {}

    def describe(self) -> str:
        return f"tensorrt {self.label} (GPU {self.gpu_index})".replace("  ", " ")

    def _load(self) -> None:
        trt = self._trt = import_tensorrt()
        load_cudart()
        try:
            set_device(self.gpu_index)
            logger_ = trt.Logger(trt.Logger.WARNING)
            runtime = trt.Runtime(logger_)
            self._engine = runtime.deserialize_cuda_engine(self._plan)
            if self._engine is None:
                raise Skip("load", "TensorRT could not deserialize the plan (built by another TensorRT "
                           "version or for another GPU?)", "run `mediqa engine build --force`")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise Skip("load", "TensorRT could not create an execution context (out of GPU memory?)")
            self._stream = CudaStream()
            self._bind_io(trt)
            if self.warmup:
                self._warm_up()
        except CudaError as exc:
            self._close()
            raise Skip("load", f"CUDA error while loading the engine: {exc}") from None
        except Skip:
            self._close()
            raise

    def _bind_io(self, trt: Any) -> None:
        inputs, outputs = {}, []
        lows, highs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            shape = tuple(self._engine.get_tensor_shape(name))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                low, opt, high = (tuple(s) for s in self._engine.get_tensor_profile_shape(name, 0))
                self._opt_shapes[name] = opt
                lows.append(low[0] if low else 1)
                highs.append(high[0] if high else 1)
                inputs[name] = TensorSpec(name, dtype, tuple(d if d >= 0 else None for d in shape))
                self._buffers[name] = HostDeviceBuffer(int(np.prod(high, dtype=np.int64)) * dtype.itemsize, dtype)
                self._context.set_input_shape(name, high)
            else:
                outputs.append(name)
        for name in outputs:  # output shapes at the largest input shapes size the output buffers
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            shape = tuple(self._context.get_tensor_shape(name))
            self._buffers[name] = HostDeviceBuffer(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, dtype)
        for name, buf in self._buffers.items():
            if not self._context.set_tensor_address(name, buf.device_ptr):
                raise Skip("load", f"TensorRT rejected the address of tensor '{name}'")
        self.input_specs, self.output_names = inputs, tuple(outputs)
        self.batch_range = (max(lows), min(highs)) if lows else None

    def _warm_up(self) -> None:
        feed = {name: np.zeros(self._opt_shapes[name], spec.dtype) for name, spec in self.input_specs.items()}
        out = self._infer(feed)
        logger.debug("tensorrt warm-up done: %s", {k: v.shape for k, v in out.items()})

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._stream is None:
            raise RuntimeError("tensorrt backend used after close()")
        for name, arr in feed.items():
            buf = self._buffers[name]
            np.copyto(buf.host_view(arr.shape), arr)
            if not self._context.set_input_shape(name, tuple(arr.shape)):
                raise Skip("load", f"TensorRT rejected input shape {arr.shape} for '{name}'")
            buf.to_device(arr.nbytes, self._stream)
        if not self._context.execute_async_v3(self._stream.handle):
            raise Skip("load", "TensorRT execute_async_v3 failed")
        shapes = {name: tuple(self._context.get_tensor_shape(name)) for name in self.output_names}
        for name in self.output_names:
            buf = self._buffers[name]
            buf.to_host(int(np.prod(shapes[name], dtype=np.int64)) * buf.dtype.itemsize, self._stream)
        self._stream.synchronize()
        return {name: self._buffers[name].host_view(shapes[name]).copy() for name in self.output_names}

    def _close(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers.clear()
        if self._stream is not None:
            self._stream.destroy()
            self._stream = None
        self._context = None
        self._engine = None
