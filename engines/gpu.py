"""Which GPU is this? Name, compute capability, SM count and memory, for the engine cache key.

A TensorRT plan is tied to the GPU model / compute capability it was built on
(https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/advanced.html, "engine
compatibility"), so the cache key carries these. cuda-python (``cudaGetDeviceProperties``) is the
source of truth; ``nvidia-smi`` is a fallback for listing and diagnostics only: it cannot report the
SM count, so identities from it never match a key made with cuda-python.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from mediqa.engines.backends.cuda_mem import CudaError, check, load_cudart
from mediqa.errors import BackendUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuIdentity:
    index: int
    name: str
    compute_capability: tuple[int, int]
    sm_count: int | None
    total_memory_mib: int
    source: str  # "cuda-python" or "nvidia-smi"

    @property
    def sm(self) -> str:
        """``sm_89`` style, as users see it in error messages."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    def key_fields(self) -> dict[str, Any]:
        """What makes two GPUs interchangeable for a plan (index and probe source excluded)."""
        return {"name": self.name, "compute_capability": list(self.compute_capability),
                "sm_count": self.sm_count, "total_memory_mib": self.total_memory_mib}

    def to_dict(self) -> dict[str, Any]:
        return {**self.key_fields(), "index": self.index, "source": self.source, "sm": self.sm}

    def describe(self) -> str:
        sms = f", {self.sm_count} SMs" if self.sm_count else ""
        return f"GPU {self.index}: {self.name} ({self.sm}{sms}, {self.total_memory_mib} MiB)"


def probe_gpu(index: int = 0, allow_smi: bool = True) -> GpuIdentity:
    """Identity of GPU ``index``; BackendUnavailable says why there is none (package, driver, no GPU)."""
    reasons: list[str] = []
    try:
        return _probe_cuda_python(index)
    except BackendUnavailable as exc:
        reasons.append(str(exc))
    if allow_smi:
        try:
            return _probe_nvidia_smi(index)
        except BackendUnavailable as exc:
            reasons.append(str(exc))
    raise BackendUnavailable("no CUDA GPU found: " + "; ".join(reasons))


def _probe_cuda_python(index: int) -> GpuIdentity:
    cudart = load_cudart()
    try:
        count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if index >= int(count):
            raise BackendUnavailable(f"cuda-python sees {count} GPU(s), GPU {index} requested")
        prop = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    except CudaError as exc:
        raise BackendUnavailable(f"cuda-python: {exc}") from None
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuIdentity(index=index, name=name.strip("\x00 ").strip(),
                       compute_capability=(int(prop.major), int(prop.minor)),
                       sm_count=int(prop.multiProcessorCount),
                       total_memory_mib=int(prop.totalGlobalMem) // (1 << 20), source="cuda-python")


def _probe_nvidia_smi(index: int) -> GpuIdentity:
    exe = shutil.which("nvidia-smi")
    if not exe:
        raise BackendUnavailable("nvidia-smi not found (no NVIDIA driver)")
    cmd = [exe, "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits", f"--id={index}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise BackendUnavailable(f"nvidia-smi failed: {exc}") from None
    parts = [p.strip() for p in out.strip().splitlines()[0].split(",")] if out.strip() else []
    if len(parts) != 3:
        raise BackendUnavailable(f"nvidia-smi gave no usable answer for GPU {index}: {out.strip()!r}")
    try:
        major, minor = (int(x) for x in parts[1].split("."))
        memory = int(float(parts[2]))
    except ValueError:
        raise BackendUnavailable(f"nvidia-smi answer not understood: {out.strip()!r}") from None
    return GpuIdentity(index=index, name=parts[0], compute_capability=(major, minor), sm_count=None,
                       total_memory_mib=memory, source="nvidia-smi")
