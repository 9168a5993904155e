"""Inference engines for MedIQA Edge: TensorRT FP16 per GPU, verified and cached, with a fallback chain.

Runtime API (what the agent's scorer calls)::

    from mediqa.engines import select_backend

    backend, skipped = select_backend(
        model_path,                                   # exported FP32 ONNX (inputs/outputs read from the graph)
        config_backends=("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"),   # scoring.backends
        threads=2,                                    # scoring.threads (ONNX Runtime CPU)
        engine_cache=Path(...),                       # scoring.engine_cache or <state_dir>/engines
        gpu_index=0, slices=7,                        # slices x card crops = the engine's batch profile
        build_engines=False,                          # scoring.build_engines; True also needs golden=GoldenSet
    )                                                 # -> (Backend, list[SkipReason]); already loaded
    with backend:                                     # close() on exit
        out = backend.infer({"image": f32[N,C,S,S], "prompt": i64[N,4]})   # -> {"quality": [N], "physics": [N,P]}

``Backend``: ``load() -> Backend``, ``infer(dict[str, np.ndarray]) -> dict[str, np.ndarray]``, ``close()``,
``describe() -> str``, ``input_specs``, ``output_names``; the base class checks names, dtypes, shapes and the
engine's batch range (``ModelError`` on mismatch). ``SkipReason(backend, kind, message, remedy)`` with kind in
package / gpu / engine / load / gate / config (``doctor`` can print them). ``select_backend`` logs once which
backend runs and why earlier ones were skipped (engine/gate/load problems as maintenance warnings); if nothing
runs it raises ``BackendUnavailable`` listing every reason. It never builds unless ``build_engines=True``.

Build side (``mediqa engine build|list|verify|bench``, in ``mediqa/cli/engine.py``):
``builder.pipeline.build_engine(model, EngineCache(dir), golden, gpu_index=, slices=, typing="strong"|"flag",
force=)``; ``fp16.convert_to_fp16(src, dst)``; ``gate.accuracy.run_gate`` / ``evaluate_gate``;
``gate.golden.GoldenSet`` (.npz of already-preprocessed model inputs) and ``golden_from_inputs``. This library
reads no DICOM: the application side builds golden sets from DICOM series and hands them over as a GoldenSet.
The backend names a configuration may use live in the contract (``mediqa.backends.BACKEND_NAMES``).

Layout (imports point down the list, never up): ``chain.py`` (select_backend); ``builder/`` (pipeline,
verify, trt_build, layers); ``bench.py``; ``gate/`` (accuracy, golden); ``cache/`` (lookup, store, manifest,
key, files: the cache lock); ``fp16.py``; ``gpu.py``; ``backends/`` (base, onnxrt, cuda_mem, tensorrt);
``model_io.py``; ``files.py`` (atomic writes).
Nothing heavy is imported by this package at import time (``mediqa --help`` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # real types for ``from mediqa.engines import ...``; loaded lazily below at run time
    from mediqa.engines.backends.base import Backend
    from mediqa.engines.chain import SkipReason, select_backend

__all__ = ["Backend", "SkipReason", "select_backend"]


def __getattr__(name: str) -> Any:
    if name in ("select_backend", "SkipReason"):
        from mediqa.engines import chain

        return getattr(chain, name)
    if name == "Backend":
        from mediqa.engines.backends.base import Backend

        return Backend
    raise AttributeError(f"module 'mediqa.engines' has no attribute {name!r}")
