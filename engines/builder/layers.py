"""Which precision did each engine layer actually get? Parsed from IEngineInspector JSON.

Building "FP16" does not mean every layer runs in FP16: TensorRT may keep layers in FP32 (weak typing
on 10.x) and strongly typed builds follow the ONNX types. The manifest records the truth.
The JSON schema changed in TensorRT 11 ("Bindings" -> "I/O Tensors", "Format/Datatype" split into
"Format" and "DataType": https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
tensorrt-10x-to-11x-IEngineInspector.html), so both shapes are read. Needs an engine built with
``ProfilingVerbosity.DETAILED``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

logger = logging.getLogger(__name__)

_PATTERNS = (  # order matters: "BF16" before "FP16"/"Half"
    ("bf16", re.compile(r"\bBF16\b|BFloat16", re.I)),
    ("fp16", re.compile(r"\bFP16\b|\bHalf\b", re.I)),
    ("fp8", re.compile(r"\bFP8\b", re.I)),
    ("int8", re.compile(r"\bInt8\b", re.I)),
    ("fp32", re.compile(r"\bFP32\b|\bFloat\b", re.I)),
    ("int64", re.compile(r"\bInt64\b", re.I)),
    ("int32", re.compile(r"\bInt32\b", re.I)),
    ("bool", re.compile(r"\bBool\b", re.I)),
)


def tensor_precision(tensor: Any) -> str:
    """Precision of one layer input/output entry (10.x "Format/Datatype" or 11.x "DataType")."""
    if not isinstance(tensor, dict):
        return "unknown"
    text = " ".join(str(tensor.get(k, "")) for k in ("DataType", "Format/Datatype", "Format"))
    for label, pattern in _PATTERNS:
        if pattern.search(text):
            return label
    return "unknown"


def layer_precisions(engine_json: str) -> dict[str, Any]:
    """Summary for the manifest: counts of layers by the precision of their first output, plus per layer
    name/type/precision. A layer "computes in FP16" when its first output is FP16."""
    try:
        info = json.loads(engine_json)
    except json.JSONDecodeError as exc:
        logger.warning("engine inspector output is not JSON: %s", exc)
        return {"counts": {}, "layers": [], "error": f"inspector output is not JSON: {exc}"}
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    rows = []
    counts: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):  # LAYER_NAMES_ONLY verbosity gives plain names
            rows.append({"name": str(layer), "type": "?", "precision": "unknown"})
            counts["unknown"] += 1
            continue
        outputs = layer.get("Outputs") or []
        precision = tensor_precision(outputs[0]) if outputs else "none"
        rows.append({"name": str(layer.get("Name", "?")), "type": str(layer.get("LayerType", "?")),
                     "precision": precision})
        counts[precision] += 1
    return {"counts": dict(sorted(counts.items())), "layers": rows}


def describe_counts(summary: dict[str, Any]) -> str:
    counts = summary.get("counts") or {}
    return ", ".join(f"{n} {p}" for p, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "no layer info"
