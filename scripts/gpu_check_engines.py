"""One-shot engine check for a session with a lent GPU machine (H100/H200; torch CUDA + cuda-python,
no TensorRT). Prints one JSON report; exits 0 when every check that could run passed.

    python scripts/gpu_check_engines.py [--model MODEL.onnx] [--golden FILE.npz | --golden-dicom DIR]

Checks, each recorded as ran / skipped (why) / passed:
1. GPU identity via cuda-python (the engine cache key fields) and via nvidia-smi.
2. cuda-python round trip through the TensorRT backend's own buffer code (pinned host + device buffers,
   one stream, async H2D/D2H), sized like a real series batch, plus its latency.
3. ONNX Runtime CPU FP32 vs the FP16 ONNX on the golden set (the tiny test model unless --model).
4. The fallback chain as the agent would see it (TensorRT is expected to be skipped: not installed).
Degrades gracefully on a CPU-only machine: GPU steps report "skipped" with the reason.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mediqa.engines.gate.golden import GoldenSet

ROOT = Path(__file__).resolve().parents[1]


def _step(report: dict[str, Any], name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
    from mediqa.errors import BackendUnavailable

    start = time.perf_counter()
    try:
        report[name] = {"status": "passed", **(fn() or {})}
    except BackendUnavailable as exc:
        report[name] = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a check script reports every failure and carries on
        report[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(limit=4)}
    report[name]["seconds"] = round(time.perf_counter() - start, 3)


def gpu_identity() -> dict[str, Any]:
    from mediqa.engines.gpu import _probe_nvidia_smi, probe_gpu

    out: dict[str, Any] = {"cuda_python": probe_gpu(0, allow_smi=False).to_dict()}
    try:
        out["nvidia_smi"] = _probe_nvidia_smi(0).to_dict()
    except Exception as exc:  # noqa: BLE001
        out["nvidia_smi"] = f"unavailable: {exc}"
    return out


def buffers_round_trip() -> dict[str, Any]:
    from mediqa.engines.backends.cuda_mem import CudaStream, HostDeviceBuffer, gpu_count, load_cudart, set_device

    load_cudart()
    if gpu_count() == 0:
        from mediqa.errors import BackendUnavailable

        raise BackendUnavailable("cuda-python sees no GPU")
    set_device(0)
    data = np.random.default_rng(0).standard_normal((28, 3, 96, 96)).astype(np.float32)
    stream, buf = CudaStream(), HostDeviceBuffer(data.nbytes * 2, data.dtype)
    try:
        times = []
        for _ in range(20):
            np.copyto(buf.host_view(data.shape), data)
            t0 = time.perf_counter()
            buf.to_device(data.nbytes, stream)
            buf.host_view(data.shape)[...] = 0
            buf.to_host(data.nbytes, stream)
            stream.synchronize()
            times.append((time.perf_counter() - t0) * 1000)
        equal = bool(np.array_equal(buf.host_view(data.shape), data))
    finally:
        buf.free()
        stream.destroy()
    if not equal:
        raise RuntimeError("device round trip changed the data")
    return {"bytes": data.nbytes, "round_trip_ms_median": round(float(np.median(times)), 3), "equal": equal}


def fp16_agreement(model: Path, golden: GoldenSet, cache_dir: Path) -> dict[str, Any]:
    from mediqa.engines.builder.pipeline import check_fp16
    from mediqa.engines.cache.store import EngineCache

    result = check_fp16(model, EngineCache(cache_dir), golden)
    gate = result.gate
    return {"passed": gate.passed, "cases": len(gate.cases), "max_abs_diff_quality": gate.max_abs_diff,
            "other_outputs_max_abs_diff": gate.other_outputs_max_abs_diff, "tolerance": gate.tolerance,
            "decisions": {c.name: "retake" if c.reference_retake else "ok" for c in gate.cases},
            "golden": gate.golden}


def chain_report(model: Path, cache_dir: Path) -> dict[str, Any]:
    from mediqa.engines.chain import select_backend

    backend, skipped = select_backend(model, engine_cache=cache_dir, slices=3)
    backend.close()
    return {"runs": backend.describe(), "skipped": [str(s) for s in skipped]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="FP32 ONNX model (default: the tiny test model, exported now)")
    parser.add_argument("--golden", type=Path, help="golden set .npz for --model")
    parser.add_argument("--golden-dicom", type=Path, help="build the golden set from DICOM series under DIR")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    report: dict[str, Any] = {"host": platform.node(), "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            import tiny_model

            model = tiny_model.export_tiny_model(work / "tiny.onnx")
        golden = _golden(args, model, work)
        _step(report, "gpu_identity", gpu_identity)
        _step(report, "cuda_buffers_round_trip", buffers_round_trip)
        _step(report, "ort_cpu_fp32_vs_fp16", lambda: fp16_agreement(model, golden, work / "cache"))
        _step(report, "fallback_chain", lambda: chain_report(model, work / "cache"))
    print(json.dumps(report, indent=2, default=str))
    return 1 if any(isinstance(v, dict) and v.get("status") == "failed" for v in report.values()) else 0


def _golden(args: argparse.Namespace, model: Path, work: Path) -> GoldenSet:
    from mediqa.engines.gate.golden import GoldenSet, golden_from_inputs

    if args.golden:
        return GoldenSet.load(args.golden)
    if args.golden_dicom:
        from mediqa.agent.golden import build_golden_from_dicom
        from mediqa.engines.model_io import read_model_info
        from mediqa.model_card import card_from_metadata

        return build_golden_from_dicom(args.golden_dicom, card_from_metadata(read_model_info(model).metadata))
    shared = ROOT.parent / "shared" / "data" / "dicom" / "dcm_qa_ct"
    if args.model is None and shared.is_dir():
        from mediqa.agent.golden import build_golden_from_dicom
        from mediqa.engines.model_io import read_model_info
        from mediqa.model_card import card_from_metadata

        card = card_from_metadata(read_model_info(model).metadata)
        return build_golden_from_dicom(shared, card, slices=3, max_series=3)
    import tiny_model

    return golden_from_inputs(tiny_model.golden_cases(), tiny_model.provenance())


if __name__ == "__main__":
    raise SystemExit(main())
