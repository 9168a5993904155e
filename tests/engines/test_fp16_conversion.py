"""FP16 ONNX vs FP32 on ONNX Runtime CPU: stated tolerance, same decisions, fragile ops kept FP32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mediqa.engines.backends.onnxrt import OrtBackend
from mediqa.engines.fp16 import convert_to_fp16
from mediqa.engines.gate.accuracy import run_gate
from mediqa.errors import ModelError

# FP16 rounding on this model measures ~1e-4; 0.01 leaves margin yet catches a broken conversion
# (e.g. LayerNorm in FP16 or a wrong cast), which moves scores by >0.1.
FP16_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def fp16_path(tiny_onnx, tmp_path_factory):
    return convert_to_fp16(tiny_onnx, tmp_path_factory.mktemp("fp16") / "tiny.fp16.onnx")


def test_fp16_agrees_with_fp32_on_golden_set(tiny_onnx, fp16_path, golden):
    with OrtBackend(tiny_onnx) as ref, OrtBackend(fp16_path, label="fp16") as cand:
        gate = run_gate(cand, ref, golden, score_output="quality", tolerance=FP16_TOLERANCE)
    assert gate.passed, gate.summary()
    assert 0 < gate.max_abs_diff < FP16_TOLERANCE  # > 0: the conversion really changed precision
    decisions = [c.reference_retake for c in gate.cases]
    assert True in decisions and False in decisions  # the golden set exercises both decisions
    assert gate.other_outputs_max_abs_diff["physics"] < 0.01


def test_fp16_keeps_io_fp32_and_fragile_ops_fp32(fp16_path):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp16_path)))
    io_types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
    assert io_types == {"image": onnx.TensorProto.FLOAT, "prompt": onnx.TensorProto.INT64,
                        "quality": onnx.TensorProto.FLOAT, "physics": onnx.TensorProto.FLOAT}
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "ReduceMean"):
            assert types.get(node.output[0]) == onnx.TensorProto.FLOAT, node.name
    fp16_nodes = [n for n in model.graph.node if types.get(n.output[0]) == onnx.TensorProto.FLOAT16]
    assert any(n.op_type == "MatMul" for n in fp16_nodes)


def test_fp16_carries_the_model_card(tiny_onnx, fp16_path):
    keys = {p.key for p in onnx.load(str(fp16_path)).metadata_props}
    assert "mediqa.model_card" in keys and "mediqa.precision" in keys


def test_fp16_runs_on_all_batch_sizes(tiny_onnx, fp16_path, golden):
    feed = {k: v[:1] for k, v in golden.cases[0].inputs.items()}
    with OrtBackend(tiny_onnx) as ref, OrtBackend(fp16_path) as cand:
        np.testing.assert_allclose(cand.infer(feed)["quality"], ref.infer(feed)["quality"], atol=FP16_TOLERANCE)


def test_converting_an_fp16_model_again_is_refused(fp16_path, tmp_path):
    model = onnx.load(str(fp16_path))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.save(model, str(tmp_path / "half.onnx"))
    with pytest.raises(ModelError, match="FP16"):
        convert_to_fp16(tmp_path / "half.onnx", tmp_path / "again.onnx")
