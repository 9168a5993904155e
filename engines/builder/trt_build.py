"""The thin TensorRT part of a build: ONNX -> serialized plan, with profile, timing cache and layer report.

Supports TensorRT 10.x and 11.x by feature detection, never by version string:
- ``BuilderFlag.FP16`` exists (10.x): ``typing="flag"`` parses the FP32 ONNX and sets the flag (weak
  typing); ``typing="strong"`` parses the FP16 ONNX into a network created with
  ``1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
- no ``BuilderFlag.FP16`` (11.x): networks are always strongly typed (the creation flag is deprecated
  and ignored), so only ``strong`` is possible.
Docs: Builder / NetworkDefinitionCreationFlag
(https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html),
10.x -> 11.x Python migration (https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
tensorrt-10x-to-11x-python-api-patterns.html), ITimingCache, EngineInspector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediqa.engines.backends.tensorrt import import_tensorrt
from mediqa.engines.builder.layers import describe_counts, layer_precisions
from mediqa.engines.cache.key import BuildRecipe
from mediqa.engines.files import atomic_write_bytes
from mediqa.errors import MediqaError, ModelError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanBuild:
    plan: bytes
    layers: dict[str, Any]
    seconds: float
    mode: str  # what was actually done, e.g. "strongly typed network from FP16 ONNX"
    tensorrt_version: str


def has_fp16_flag(trt: Any) -> bool:
    """True on TensorRT 10.x; ``BuilderFlag.FP16`` was removed in 11 (weak typing is gone)."""
    return hasattr(trt.BuilderFlag, "FP16")


def check_typing(trt: Any, typing: str) -> None:
    if typing == "flag" and not has_fp16_flag(trt):
        raise MediqaError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (removed in TensorRT 11)",
                          "build with --typing strong (the FP16 ONNX, strongly typed)")


def build_plan(onnx_fp32: Path, onnx_fp16: Path, recipe: BuildRecipe, item_shapes: Mapping[str, tuple[int, ...]],
               timing_cache: Path | None = None, workspace_mib: int = 2048) -> PlanBuild:
    """Build a serialized plan. ``item_shapes``: per input, the shape of one batch item (for the profile)."""
    trt = import_tensorrt()
    check_typing(trt, recipe.typing)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    if recipe.typing == "strong":
        source = onnx_fp16
        # 10.x: ask for strong typing explicitly; 11.x: always strongly typed, flag deprecated -> pass 0.
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if has_fp16_flag(trt) else 0
        mode = "strongly typed network from the FP16 ONNX"
    else:
        source, flags, mode = onnx_fp32, 0, "FP32 ONNX + BuilderFlag.FP16 (weak typing, TensorRT 10)"
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT's ONNX parser rejected {source.name}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions via the inspector
    if recipe.typing == "flag":
        config.set_flag(trt.BuilderFlag.FP16)
    config.add_optimization_profile(_profile(builder, network, recipe, item_shapes))
    cache_blob = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(cache, ignore_mismatch=False)

    logger.info("building TensorRT %s engine: %s, batch %d..%d (opt %d), workspace %d MiB, timing cache %s",
                trt.__version__, mode, recipe.min_batch, recipe.max_batch, recipe.opt_batch, workspace_mib,
                f"{timing_cache} ({len(cache_blob)} bytes)" if timing_cache else "off")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise MediqaError("TensorRT failed to build the engine (see the TensorRT messages above)")
    plan = bytes(serialized)
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    layers = _inspect(trt, trt_logger, plan)
    logger.info("built engine in %.1f s: %d bytes, layers: %s", seconds, len(plan), describe_counts(layers))
    return PlanBuild(plan, layers, seconds, mode, str(trt.__version__))


def _profile(builder: Any, network: Any, recipe: BuildRecipe, item_shapes: Mapping[str, tuple[int, ...]]) -> Any:
    """One optimization profile: batch min..max (opt = a full series), other dims fixed."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        item = item_shapes.get(tensor.name)
        rest = [d if d >= 0 else (item[j] if item else -1) for j, d in enumerate(dims[1:])]
        if any(d < 0 for d in rest):
            raise ModelError(f"input '{tensor.name}' has dynamic non-batch dims {dims} and no golden example")
        profile.set_shape(tensor.name, (recipe.min_batch, *rest), (recipe.opt_batch, *rest),
                          (recipe.max_batch, *rest))
    return profile


def _inspect(trt: Any, trt_logger: Any, plan: bytes) -> dict[str, Any]:
    engine = trt.Runtime(trt_logger).deserialize_cuda_engine(plan)
    if engine is None:
        return {"counts": {}, "layers": [], "error": "plan did not deserialize for inspection"}
    inspector = engine.create_engine_inspector()
    return layer_precisions(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
