"""FP32 ONNX -> mixed-precision FP16 ONNX, the input of a strongly typed TensorRT build.

TensorRT 11 removed ``BuilderFlag.FP16``: precision must come from the ONNX graph itself
(https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-patterns.html).
We convert with onnxconverter-common's ``convert_float_to_float16``, keep the model's inputs and outputs
FP32 (``keep_io_types``: the agent feeds float32 and reads float32) and keep numerically fragile ops in
FP32: normalisations and softmax (sums of many terms, large intermediate values), reductions, and
exp/log/pow/sqrt (overflow above 65504 or underflow to 0 in FP16).
The FP16 file is useful on its own: it can be checked on ONNX Runtime CPU where no GPU exists.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from mediqa.engines.files import atomic_write_bytes
from mediqa.errors import BackendUnavailable, ModelError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

# Ops kept in FP32 on top of onnxconverter-common's own default block list.
FRAGILE_OPS: tuple[str, ...] = (
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceMax", "ReduceMin",
    "ReduceProd", "ReduceLogSum", "ReduceLogSumExp",
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal",
)


def fp32_op_block_list() -> tuple[str, ...]:
    """The full sorted list of op types left in FP32 (part of the precision recipe and cache key)."""
    return tuple(sorted(set(FRAGILE_OPS) | set(_converter_default_block_list())))


def _converter_default_block_list() -> list[str]:
    try:
        from onnxconverter_common import float16
    except ImportError:
        # Same list as onnxconverter-common 1.14-1.16 so the recipe (and cache key) is stable on a
        # console that only runs engines and does not have the converter installed.
        return ["ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
                "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor",
                "Normalizer", "OneHotEncoder", "RandomUniformLike", "SVMClassifier", "SVMRegressor",
                "Scaler", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "ZipMap", "NonMaxSuppression",
                "TopK", "RoiAlign", "Resize", "Range", "CumSum", "Min", "Max", "Upsample"]
    return list(float16.DEFAULT_OP_BLOCK_LIST)


def converter_version() -> str:
    try:
        return f"onnxconverter-common {md.version('onnxconverter-common')}"
    except md.PackageNotFoundError:
        return "onnxconverter-common not installed"


def convert_to_fp16(src: str | Path, dst: str | Path, op_block_list: tuple[str, ...] | None = None) -> Path:
    """Write the mixed-precision FP16 version of ``src`` to ``dst`` (atomically) and check it.

    The ONNX metadata (model card included) is carried over so the FP16 file describes itself.
    """
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise BackendUnavailable(
            "cannot make the FP16 ONNX: onnxconverter-common is not installed",
            "pip install onnxconverter-common (or the 'gpu' extra)",
        ) from None
    src, dst = Path(src), Path(dst)
    block = list(op_block_list or fp32_op_block_list())
    model = onnx.load(str(src))
    if any(vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for vi in model.graph.input):
        raise ModelError(f"{src.name} already has FP16 inputs", "pass the FP32 export, not a converted model")
    folded = fold_identity_initializers(model)
    if folded:
        logger.debug("folded %d Identity nodes over initializers before FP16 conversion", folded)
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    except ValueError as exc:  # e.g. "already converted to float16"
        raise ModelError(f"FP16 conversion of {src.name} failed: {exc}", "pass the FP32 export") from None
    fixed = fix_cast_targets(converted)
    if fixed:
        logger.debug("retargeted %d Cast-to-float nodes inside the FP16 region", fixed)
    del converted.metadata_props[:]
    for prop in model.metadata_props:
        converted.metadata_props.add(key=prop.key, value=prop.value)
    converted.metadata_props.add(key="mediqa.precision", value="fp16-mixed; fp32 ops: " + ",".join(block))
    onnx.checker.check_model(converted)
    atomic_write_bytes(dst, converted.SerializeToString())
    logger.info("wrote FP16 ONNX %s (%s; %s)", dst, precision_summary(converted), converter_version())
    return dst


def fold_identity_initializers(model: onnx.ModelProto) -> int:
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer under the output's name.

    torch's exporter de-duplicates equal parameters (e.g. every LayerNorm weight of ones) through
    Identity nodes; onnxconverter-common then converts the shared initializer to FP16 while a blocked
    FP32 op (LayerNormalization) still reads it, and ONNX Runtime rejects the graph ("Type
    (tensor(float16)) of output arg ... does not match"). Folding first gives each consumer its own
    initializer, which the converter types correctly. Returns the number of nodes folded.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    outputs = {o.name for o in graph.output}
    keep, folded = [], 0
    for node in graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in inits and node.output[0] not in outputs:
            copy = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), node.output[0])
            graph.initializer.append(copy)
            folded += 1
        else:
            keep.append(node)
    if folded:
        del graph.node[:]
        graph.node.extend(keep)
    return folded


def fix_cast_targets(model: onnx.ModelProto) -> int:
    """Make ``Cast(to=FLOAT)`` nodes that the converter moved into the FP16 region cast to FLOAT16.

    onnxconverter-common retypes such a Cast's output value_info to FP16 but leaves its ``to``
    attribute at FLOAT (seen with shape arithmetic like ``head_dim ** 0.5`` computed from a tensor
    shape), which ONNX Runtime and TensorRT reject as a type mismatch. Returns the number fixed.
    """
    import onnx

    fp16_values = {vi.name for vi in model.graph.value_info
                   if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "Cast" or node.output[0] not in fp16_values:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                attr.i = onnx.TensorProto.FLOAT16
                fixed += 1
    return fixed


def precision_summary(model: onnx.ModelProto) -> str:
    """Count nodes by the element type of their first output: shows what actually became FP16."""
    counts = node_precisions(model)
    return ", ".join(f"{k}: {v} nodes" for k, v in sorted(counts.items()))


def node_precisions(model: onnx.ModelProto) -> Counter[str]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    types.update({init.name: init.data_type for init in inferred.graph.initializer})
    counts: Counter[str] = Counter()
    for node in inferred.graph.node:
        elem = types.get(node.output[0]) if node.output else None
        name = onnx.TensorProto.DataType.Name(elem).lower() if elem else "unknown"
        counts[name] += 1
    return counts
