"""``build_engine``: FP32 ONNX -> checked FP16 ONNX -> TensorRT plan -> accuracy gate -> cache.

A pure function of (model, recipe, GPU, TensorRT) with a cache key and a lock (Polygraphy's
``EngineBytesFromNetwork`` is the model). The FP16 step runs and is checked on ONNX Runtime CPU first,
so a machine without TensorRT still produces (and vouches for) the FP16 ONNX before saying why it
cannot build. An engine that fails the gate is never installed.
"""

from __future__ import annotations

import getpass
import logging
import platform
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mediqa import __version__
from mediqa.engines.backends.onnxrt import OrtBackend
from mediqa.engines.backends.tensorrt import TensorRTBackend, import_tensorrt
from mediqa.engines.builder.trt_build import build_plan
from mediqa.engines.cache.key import BuildRecipe, cache_key, key_components, series_batch
from mediqa.engines.cache.manifest import Manifest
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.fp16 import convert_to_fp16, converter_version
from mediqa.engines.gate.accuracy import DEFAULT_TOLERANCE, GateResult, retake_threshold, run_gate
from mediqa.engines.gate.golden import GoldenSet
from mediqa.engines.gpu import probe_gpu
from mediqa.engines.model_io import ModelInfo, read_model_info, score_output_name, sha256_bytes, sha256_file
from mediqa.errors import CannotBuildHere, MediqaError, ModelError, Skip
from mediqa.model_card import ModelCard, card_from_metadata

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fp16Check:
    model: ModelInfo
    card: ModelCard | None  # None for a model exported without a card
    path: Path
    gate: GateResult


@dataclass(frozen=True)
class BuildOutcome:
    fp16: Fp16Check
    manifest: Manifest
    directory: Path
    up_to_date: bool


def check_fp16(model_path: str | Path, cache: EngineCache, golden: GoldenSet, *, tolerance: float = DEFAULT_TOLERANCE,
               retake_below: float | None = None, threads: int = 2) -> Fp16Check:
    """Convert to FP16 (into the cache) and gate it against FP32 on ONNX Runtime CPU.

    Caveat (stated in the report): ORT CPU runs FP16 nodes that lack an FP16 CPU kernel in FP32 behind
    inserted casts, so this bounds the rounding of weights and activations, not FP16 accumulation; the
    TensorRT gate on the GPU covers the latter.
    """
    info = read_model_info(model_path)
    card = card_from_metadata(info.metadata)
    golden.check_against(info.input_names)
    threshold = retake_threshold(card, 2.0) if retake_below is None else retake_below
    with cache.lock():
        path = convert_to_fp16(info.path, cache.fp16_path(info.sha256))
    with OrtBackend(info.path, "cpu", threads) as ref, OrtBackend(path, "cpu", threads, label="fp16") as cand:
        gate = run_gate(cand, ref, golden, score_output=score_output_name(info), tolerance=tolerance,
                        retake_below=threshold, candidate_name="onnxruntime-cpu fp16-onnx")
    if not gate.passed:
        raise ModelError(f"the FP16 ONNX does not agree with FP32, not building: {gate.summary()}",
                         "keep more ops in FP32 or use the FP32 model (onnxruntime backends)")
    return Fp16Check(info, card, path, gate)


def build_engine(model_path: str | Path, cache: EngineCache, golden: GoldenSet, *, gpu_index: int = 0,
                 slices: int = 7, typing: str = "strong", force: bool = False,
                 tolerance: float = DEFAULT_TOLERANCE, retake_below: float | None = None) -> BuildOutcome:
    fp16 = check_fp16(model_path, cache, golden, tolerance=tolerance, retake_below=retake_below)
    done = (f"The FP16 ONNX was written to {fp16.path} and agrees with FP32 on ONNX Runtime CPU "
            f"({len(golden.cases)} golden cases, max |diff| {fp16.gate.max_abs_diff:.4f}, same decisions)")
    try:
        trt = import_tensorrt()
        gpu = probe_gpu(gpu_index, allow_smi=False)
    except Skip as exc:
        raise CannotBuildHere(f"cannot build a TensorRT engine on this machine: {exc}. {done}",
                              "run `mediqa engine build` on the console with the GPU (TensorRT 10/11 "
                              "and cuda-python installed)") from None
    info, card = fp16.model, fp16.card
    batch = series_batch(card, slices)
    largest = max(next(iter(c.inputs.values())).shape[0] for c in golden.cases)
    if largest > batch:
        raise ModelError(f"golden cases have batches up to {largest}, the engine profile stops at {batch}",
                         "rebuild the golden set with the model card's slices x crops")
    recipe = BuildRecipe.default(batch, typing)
    trt_version = str(trt.__version__)
    key = cache_key(info.sha256, recipe, trt_version, gpu)
    existing = cache.manifest(key)
    if existing and existing.gate_passed and not force:
        cache.load_plan(key)  # re-check the plan hash: an "up to date" answer must be true
        logger.info("engine %s for %s is up to date", key[:12], gpu.describe())
        return BuildOutcome(fp16, existing, cache.entry_dir(key), True)

    threshold = fp16.gate.retake_below
    item_shapes = {name: tuple(arr.shape[1:]) for name, arr in golden.cases[0].inputs.items()}
    with cache.lock():
        built = build_plan(info.path, fp16.path, recipe, item_shapes,
                           cache.timing_cache_path(trt_version, gpu.sm, gpu.name))
        with TensorRTBackend(built.plan, gpu_index, label=key[:12]) as cand, \
                OrtBackend(info.path, "cpu", 2) as ref:
            gate = run_gate(cand, ref, golden, score_output=fp16.gate.score_output, tolerance=tolerance,
                            retake_below=threshold, candidate_name=f"tensorrt {trt_version} {recipe.typing}")
        if not gate.passed:
            raise MediqaError(f"the TensorRT engine failed the accuracy gate and was NOT installed: "
                              f"{gate.summary()}", "the agent keeps using ONNX Runtime; report this build")
        manifest = Manifest(
            key=key, components=key_components(info.sha256, recipe, trt_version, gpu),
            plan_sha256=sha256_bytes(built.plan), plan_bytes=len(built.plan),
            model=_model_fields(info, card, fp16.path),
            build=_build_fields(built.seconds, built.mode, trt_version, gpu.to_dict()),
            layer_precisions=built.layers, accuracy=gate.to_dict())
        directory = cache.install(built.plan, manifest)
    return BuildOutcome(fp16, manifest, directory, False)


def _model_fields(info: ModelInfo, card: ModelCard | None, fp16_path: Path) -> dict[str, Any]:
    return {"name": info.name, "path": str(info.path), "sha256": info.sha256,
            "card": {"name": getattr(card, "name", None), "version": getattr(card, "version", None)},
            "inputs": [s.to_dict() for s in info.inputs], "outputs": [s.to_dict() for s in info.outputs],
            "fp16_onnx": {"path": str(fp16_path), "sha256": sha256_file(fp16_path), "converter": converter_version()}}


def _build_fields(seconds: float, mode: str, trt_version: str, gpu: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some service accounts / containers
        user = "?"
    return {"time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(seconds, 2),
            "mode": mode, "tensorrt": trt_version, "cuda_python": version("cuda-python"),
            "onnxruntime": version("onnxruntime"), "mediqa": __version__, "host": socket.gethostname(),
            "user": user, "platform": platform.platform(), "python": platform.python_version(), "gpu": gpu}
