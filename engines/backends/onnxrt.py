"""ONNX Runtime backends: CPU (the always-there fallback) and CUDA (when onnxruntime-gpu is installed).

One session, created at load and reused for every series. On CPU the thread count is explicit, the
memory arena is off (its peak stays allocated while the agent idles) and idle threads do not spin
(``session.intra_op.allow_spinning = 0``): the console's CPU belongs to the scanner software, not to us (https://onnxruntime.ai/docs/performance/tune-performance/threading.html).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mediqa.engines.backends.base import Backend
from mediqa.engines.model_io import TensorSpec
from mediqa.errors import Skip

logger = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise Skip("package", "onnxruntime is not installed", "pip install onnxruntime") from None
    return onnxruntime


class OrtBackend(Backend):
    """``provider``: ``cpu`` or ``cuda``. The CUDA variant refuses to load rather than silently run on CPU."""

    def __init__(self, model_path: str | Path, provider: str = "cpu", threads: int = 2, gpu_index: int = 0,
                 label: str | None = None, spinning: bool = False, memory_arena: bool = False) -> None:
        super().__init__()
        if provider not in ("cpu", "cuda"):
            raise ValueError(f"provider must be 'cpu' or 'cuda', got {provider!r}")
        self.model_path = Path(model_path)
        self.provider = provider
        self.threads = threads
        self.gpu_index = gpu_index
        self.name = f"onnxruntime-{provider}"
        self.label = label
        self.spinning = spinning  # only for measuring (scripts/bench_agent.py --only ort): the agent never spins
        # ORT's CPU arena keeps its peak allocation for the process's life (~80 MB for a series' 28 crops):
        # off, the agent's idle memory goes back down after scoring (measured: scripts/bench_agent.py --only ort).
        self.memory_arena = memory_arena
        self._session: Any = None
        # While the agent's own reading workers keep both cores busy, two intra-op threads fight them and a
        # series' pass gets slower than on one thread (docs/performance.md, "ONNX Runtime threads"): a
        # one-thread session is used while that lasts. It takes about a second to make on two busy cores, so
        # it is made in a thread when the workers take files (``prepare_spare``, asked by the loop) and dropped
        # when they stop; a series that finds the cores busy before it is there runs on the wide session.
        self._contended = False
        self._narrow: Any = None
        self._spare_lock = threading.Lock()
        self._spare_made: threading.Event | None = None  # set once a spare being made is there (or failed)
        self._spare_generation = 0  # ``release_spare`` drops a spare still being made, too

    def describe(self) -> str:
        extra = f"{self.threads} threads" if self.provider == "cpu" else f"GPU {self.gpu_index}"
        label = f" {self.label}" if self.label else ""
        return f"{self.name}{label} ({self.model_path.name}, {extra})"

    def set_contended(self, contended: bool) -> None:
        self._contended = contended and self.provider == "cpu" and self.threads > 1
        if self._contended:
            self.prepare_spare()  # not made yet (the loop normally asks earlier): the wide session serves meanwhile

    def prepare_spare(self) -> None:
        """Start making the one-thread session in a thread, if there is none: the reading workers just took
        files, so a series may soon be scored while they hold the cores."""
        if self.provider != "cpu" or self.threads <= 1 or self._session is None:
            return
        with self._spare_lock:
            if self._narrow is None and self._spare_made is None:
                self._spare_made = threading.Event()
                threading.Thread(target=self._make_spare, args=(self._spare_generation, self._spare_made),
                                 name="mediqa-ort-spare", daemon=True).start()

    def _make_spare(self, generation: int, made: threading.Event) -> None:
        try:
            ort = import_ort()
            session = ort.InferenceSession(str(self.model_path), sess_options=self._options(1),
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - without the spare the wide session serves, as before
            logger.warning("the one-thread onnxruntime session could not be made (%s): scoring stays on %d "
                           "threads", type(exc).__name__, self.threads)
            session = None
        with self._spare_lock:
            if generation == self._spare_generation and session is not None:
                self._narrow = session
            if self._spare_made is made:
                self._spare_made = None if session is not None else made  # a failed one is not tried again
        made.set()

    def wait_spare(self, timeout: float) -> bool:
        """Wait until a spare session being made is there; True when one is (tools and tests)."""
        made = self._spare_made
        if made is not None:
            made.wait(timeout)
        return self._narrow is not None

    def release_spare(self) -> None:
        with self._spare_lock:
            self._narrow = None
            self._spare_generation += 1
            if self._spare_made is not None and self._spare_made.is_set():
                self._spare_made = None  # a spare that failed may be tried again after the next idle

    @property
    def threads_in_use(self) -> int:
        return 1 if self._contended else self.threads

    def _options(self, threads: int) -> Any:
        ort = import_ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        spin = "1" if self.spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        opts.enable_cpu_mem_arena = self.memory_arena
        opts.log_severity_level = 3  # ORT's own warnings (fp16 cast insertion ...) stay out of the agent log
        return opts

    def _load(self) -> None:
        ort = import_ort()
        opts = self._options(self.threads)
        if self.provider == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise Skip("package", "onnxruntime has no CUDAExecutionProvider (the CPU-only package is "
                           "installed)", "pip install onnxruntime-gpu instead of onnxruntime")
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": self.gpu_index}),
                                    "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/RuntimeException types
            raise Skip("load", f"onnxruntime could not load {self.model_path.name}: {exc}") from None
        if self.provider == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
            raise Skip("gpu", "onnxruntime's CUDA provider did not initialise (no GPU or driver/CUDA mismatch)",
                       "check `nvidia-smi` and the CUDA/cuDNN versions onnxruntime-gpu needs")
        self._session = session
        self.input_specs = {
            i.name: TensorSpec(i.name, np.dtype(_ORT_TYPES.get(i.type, np.float32)), tuple(i.shape))
            for i in session.get_inputs()}
        self.output_names = tuple(o.name for o in session.get_outputs())

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        narrow = self._narrow
        session = narrow if self._contended and narrow is not None else self._session
        outputs = session.run(list(self.output_names), dict(feed))
        return dict(zip(self.output_names, outputs, strict=True))

    def _close(self) -> None:
        self.release_spare()
        self._session = None
