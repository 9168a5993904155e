"""``mediqa engine verify``: check every cached plan against its manifest, re-run the gate on ours.

Integrity (plan sha256 vs manifest, key vs components) needs no GPU and runs everywhere; re-running
the accuracy gate needs TensorRT and the GPU the engine was built for. The manifest's ``accuracy`` is
rewritten with the new result, so an engine that stops passing is skipped by the runtime chain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mediqa.engines.backends.onnxrt import OrtBackend
from mediqa.engines.backends.tensorrt import TensorRTBackend, import_tensorrt
from mediqa.engines.cache.key import BuildRecipe, cache_key, series_batch
from mediqa.engines.cache.lookup import find_engine
from mediqa.engines.cache.manifest import Manifest, ManifestError
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.gate.accuracy import DEFAULT_TOLERANCE, GateResult, retake_threshold, run_gate
from mediqa.engines.gate.golden import GoldenSet
from mediqa.engines.gpu import GpuIdentity, probe_gpu
from mediqa.engines.model_io import read_model_info, score_output_name
from mediqa.errors import Skip
from mediqa.model_card import card_from_metadata

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntegrityRow:
    directory: Path
    ok: bool
    detail: str


def check_integrity(cache: EngineCache) -> list[IntegrityRow]:
    rows = []
    for entry in cache.entries():
        if entry.manifest is None:
            rows.append(IntegrityRow(entry.directory, False, entry.problem or "no manifest"))
            continue
        m = entry.manifest
        try:
            recipe = BuildRecipe.from_dict(m.components["recipe"])
            gpu = GpuIdentity(0, m.gpu.get("name", "?"), tuple(m.gpu.get("compute_capability", (0, 0))),
                              m.gpu.get("sm_count"), int(m.gpu.get("total_memory_mib", 0)), "manifest")
            if cache_key(m.components["model_sha256"], recipe, m.tensorrt_version, gpu) != m.key:
                raise ManifestError("manifest components do not hash to its key")
            cache.load_plan(m.key)
        except (ManifestError, KeyError, TypeError, ValueError) as exc:
            rows.append(IntegrityRow(entry.directory, False, str(exc)))
            continue
        rows.append(IntegrityRow(entry.directory, True, f"plan sha256 {m.plan_sha256[:12]} matches"))
    return rows


def verify_engine(model_path: str | Path, cache: EngineCache, golden: GoldenSet, *, gpu_index: int = 0,
                  slices: int = 7, tolerance: float = DEFAULT_TOLERANCE) -> GateResult:
    """Re-run the gate on the engine this machine would load, and record the result in its manifest."""
    trt = import_tensorrt()
    gpu = probe_gpu(gpu_index, allow_smi=False)
    info = read_model_info(model_path)
    card = card_from_metadata(info.metadata)
    golden.check_against(info.input_names)
    plan, manifest = _find_any_gate(cache, info.sha256, str(trt.__version__), gpu, series_batch(card, slices))
    with TensorRTBackend(plan, gpu_index, label=manifest.key[:12]) as cand, OrtBackend(info.path, "cpu", 2) as ref:
        gate = run_gate(cand, ref, golden, score_output=score_output_name(info), tolerance=tolerance,
                        retake_below=retake_threshold(card), candidate_name=f"tensorrt {trt.__version__}")
    accuracy = {**gate.to_dict(), "verified_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with cache.lock():
        cache.update_manifest(manifest.with_accuracy(accuracy))
    return gate


def _find_any_gate(cache: EngineCache, model_sha: str, trt_version: str, gpu: GpuIdentity,
                   need: int) -> tuple[bytes, Manifest]:
    """Like find_engine, but an engine that failed an earlier gate may be re-verified."""
    try:
        return find_engine(cache, model_sha, trt_version, gpu, need)
    except Skip as exc:
        if exc.kind != "gate":
            raise
    for m in cache.entries_for_model(model_sha):
        if m.gpu == gpu.key_fields() and m.tensorrt_version == trt_version:
            return cache.load_plan(m.key)
    raise ManifestError("no engine to verify")
