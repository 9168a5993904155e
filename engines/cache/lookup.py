"""Find the cached engine for this model, this GPU and this TensorRT, or explain precisely why not.

The explanation is the product here: "engine built for sm_86 (NVIDIA A10), this GPU is sm_89 (NVIDIA L4):
run `mediqa engine build`" tells a field engineer what to do; "no engine" does not.
"""

from __future__ import annotations

import logging

from mediqa.engines.cache.key import BuildRecipe, cache_key
from mediqa.engines.cache.manifest import Manifest, ManifestError
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.gpu import GpuIdentity
from mediqa.errors import Skip

logger = logging.getLogger(__name__)

BUILD_REMEDY = "run `mediqa engine build`"


def find_engine(cache: EngineCache, model_sha256: str, tensorrt_version: str, gpu: GpuIdentity,
                need_batch: int) -> tuple[bytes, Manifest]:
    """Verified plan bytes + manifest; :class:`Skip` (kind engine/gate) with the reason otherwise."""
    built = cache.entries_for_model(model_sha256)
    if not built:
        raise Skip("engine", f"no TensorRT engine for this model ({model_sha256[:12]}) in {cache.root}",
                   BUILD_REMEDY)
    here = gpu.key_fields()
    same_gpu = [m for m in built if m.gpu == here]
    usable = [m for m in same_gpu if m.tensorrt_version == tensorrt_version]
    if not usable:
        raise Skip("engine", _mismatch(built, same_gpu, tensorrt_version, gpu), BUILD_REMEDY)
    fitting = [m for m in usable if BuildRecipe.from_dict(m.components["recipe"]).max_batch >= need_batch]
    if not fitting:
        largest = max(BuildRecipe.from_dict(m.components["recipe"]).max_batch for m in usable)
        raise Skip("engine", f"cached engine takes batches up to {largest}, a series needs {need_batch}",
                   "run `mediqa engine build --force` after changing slices or crops")
    passed = [m for m in fitting if m.gate_passed]
    if not passed:
        failed = ", ".join(fitting[0].accuracy.get("failed", [])) or "see `mediqa engine list`"
        raise Skip("gate", f"the cached engine failed the accuracy gate (cases: {failed})",
                   "run `mediqa engine verify`, or rebuild with `mediqa engine build --force`")
    problems = []
    for manifest in sorted(passed, key=lambda m: m.build.get("time_utc", ""), reverse=True):
        recipe = BuildRecipe.from_dict(manifest.components["recipe"])
        if cache_key(model_sha256, recipe, manifest.tensorrt_version, gpu) != manifest.key:
            problems.append(f"manifest {manifest.key[:12]} does not hash to its own key")
            continue
        try:
            plan, checked = cache.load_plan(manifest.key)
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        logger.debug("engine %s matches %s, TensorRT %s", manifest.key[:12], gpu.describe(), tensorrt_version)
        return plan, checked
    raise Skip("engine", "refusing every cached engine: " + "; ".join(problems),
               "delete the engine cache entries named and run `mediqa engine build --force`")


def _mismatch(built: list[Manifest], same_gpu: list[Manifest], tensorrt_version: str, gpu: GpuIdentity) -> str:
    if same_gpu:
        versions = ", ".join(sorted({m.tensorrt_version for m in same_gpu}))
        return (f"engine built with TensorRT {versions}, this machine has TensorRT {tensorrt_version} "
                "(a plan only runs on the TensorRT version that built it)")
    others = "; ".join(sorted({f"{m.sm} ({m.gpu.get('name', '?')}, {m.gpu.get('sm_count', '?')} SMs, "
                               f"{m.gpu.get('total_memory_mib', '?')} MiB)" for m in built}))
    return (f"engine built for {others}, this GPU is {gpu.sm} ({gpu.name}, {gpu.sm_count} SMs, "
            f"{gpu.total_memory_mib} MiB)")
