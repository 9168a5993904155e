"""The ordered fallback chain: try each configured backend, run the first that works, say why.

Like pydicom's pixel decoders (pixels/decoders/base.py): candidates are tried in order and every
reason is kept. The agent logs once which backend runs and why each earlier one was skipped; if none
works, one error lists every reason. A missing engine is a maintenance warning, never a crash, and
engines are built here only when ``build_engines=True`` (never by default on a clinical console).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.backends import BACKEND_NAMES
from mediqa.engines.backends.base import Backend
from mediqa.engines.backends.onnxrt import OrtBackend
from mediqa.errors import BackendUnavailable, ConfigError, MediqaError, Skip

if TYPE_CHECKING:  # the TensorRT and build paths are imported only when a chain takes them
    from mediqa.engines.cache.manifest import Manifest
    from mediqa.engines.cache.store import EngineCache
    from mediqa.engines.gate.golden import GoldenSet

logger = logging.getLogger(__name__)

MAINTENANCE_KINDS = ("engine", "gate", "load")  # something an engineer should fix, not a missing option


@dataclass(frozen=True)
class SkipReason:
    backend: str
    kind: str  # package, gpu, engine, load, gate, config
    message: str
    remedy: str | None = None

    def __str__(self) -> str:
        return f"{self.backend}: {self.message}" + (f" ({self.remedy})" if self.remedy else "")


@dataclass(frozen=True)
class ChainContext:
    model_path: Path
    threads: int
    engine_cache: Path | None
    gpu_index: int
    slices: int
    build_engines: bool
    golden: GoldenSet | None  # needed only to build


def select_backend(model_path: str | Path, config_backends: Sequence[str] = BACKEND_NAMES, *, threads: int = 2,
                   engine_cache: str | Path | None = None, gpu_index: int = 0, slices: int = 7,
                   build_engines: bool = False, golden: GoldenSet | None = None) -> tuple[Backend, list[SkipReason]]:
    """Load and return the first backend of ``config_backends`` that works, plus why earlier ones did not."""
    unknown = [b for b in config_backends if b not in _FACTORIES]
    if unknown or not config_backends:
        raise ConfigError(f"unknown inference backend(s) {unknown or '(none configured)'}",
                          f"choose from {', '.join(BACKEND_NAMES)}")
    ctx = ChainContext(Path(model_path), threads, Path(engine_cache).expanduser() if engine_cache else None,
                       gpu_index, slices, build_engines, golden)
    skipped: list[SkipReason] = []
    for name in config_backends:
        try:
            backend = _FACTORIES[name](ctx).load()
        except Skip as exc:
            skipped.append(SkipReason(name, exc.kind, _message(exc), exc.remedy))
            continue
        except BackendUnavailable as exc:
            skipped.append(SkipReason(name, "load", _message(exc), exc.remedy))
            continue
        _log_choice(backend, skipped)
        return backend, skipped
    raise BackendUnavailable("no inference backend can run here: " + "; ".join(str(s) for s in skipped),
                             "install onnxruntime, or fix the first reason above")


def _message(exc: MediqaError) -> str:
    return exc.args[0] if exc.args else str(exc)


def _log_choice(backend: Backend, skipped: list[SkipReason]) -> None:
    for reason in skipped:
        if reason.kind in MAINTENANCE_KINDS:
            logger.warning("maintenance: %s skipped: %s%s", reason.backend, reason.message,
                           f" ({reason.remedy})" if reason.remedy else "")
    why = "; ".join(f"{s.backend} skipped: {s.message}" for s in skipped)
    logger.info("inference backend: %s%s", backend.describe(), f" ({why})" if why else "")


def _tensorrt(ctx: ChainContext) -> Backend:
    # Imported when the chain tries TensorRT, not at import: an ONNX Runtime-only agent never loads the
    # engine cache code (and tests replace probe_gpu / load_cudart in their own modules).
    from mediqa.engines.backends.cuda_mem import load_cudart
    from mediqa.engines.backends.tensorrt import TensorRTBackend, import_tensorrt
    from mediqa.engines.cache.key import series_batch
    from mediqa.engines.cache.lookup import find_engine
    from mediqa.engines.cache.store import EngineCache
    from mediqa.engines.gpu import probe_gpu
    from mediqa.engines.model_io import read_model_info
    from mediqa.model_card import card_from_metadata

    trt = import_tensorrt()
    load_cudart()
    try:
        gpu = probe_gpu(ctx.gpu_index, allow_smi=False)
    except BackendUnavailable as exc:
        raise Skip("gpu", _message(exc)) from None
    if ctx.engine_cache is None:
        raise Skip("config", "no engine cache configured (scoring.engine_cache)")
    cache = EngineCache(ctx.engine_cache)
    info = read_model_info(ctx.model_path)
    need = series_batch(card_from_metadata(info.metadata), ctx.slices)
    try:
        plan, manifest = find_engine(cache, info.sha256, str(trt.__version__), gpu, need)
    except Skip as exc:
        if exc.kind != "engine" or not ctx.build_engines:
            raise
        plan, manifest = _build_now(ctx, cache, exc)
    return TensorRTBackend(plan, ctx.gpu_index, label=f"{manifest.key[:12]} {gpu.sm}")


def _build_now(ctx: ChainContext, cache: EngineCache, why: Skip) -> tuple[bytes, Manifest]:
    """``build_engines=True`` only: build the missing engine now, then load it through the same checks."""
    from mediqa.engines.builder.pipeline import build_engine
    from mediqa.engines.gate.golden import GoldenSet

    if not isinstance(ctx.golden, GoldenSet):
        raise Skip("engine", f"{_message(why)}; build_engines is set but no golden set was given", why.remedy)
    logger.warning("building a TensorRT engine now (build_engines=true): %s", _message(why))
    try:
        outcome = build_engine(ctx.model_path, cache, ctx.golden, gpu_index=ctx.gpu_index, slices=ctx.slices)
    except MediqaError as exc:
        raise Skip("engine", f"automatic build failed: {exc}", "run `mediqa engine build` by hand") from None
    return cache.load_plan(outcome.manifest.key)


def _ort_cuda(ctx: ChainContext) -> Backend:
    return OrtBackend(ctx.model_path, "cuda", ctx.threads, ctx.gpu_index)


def _ort_cpu(ctx: ChainContext) -> Backend:
    return OrtBackend(ctx.model_path, "cpu", ctx.threads)


_FACTORIES: dict[str, Callable[[ChainContext], Backend]] = {
    "tensorrt": _tensorrt, "onnxruntime-cuda": _ort_cuda, "onnxruntime-cpu": _ort_cpu}
