"""A small hand-built ONNX model that follows the MedIQA Edge contract (no torch needed to make it)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from mediqa.model_card import METADATA_KEY, ModelCard, Preprocessing


def contract_model(path: Path, crop: int = 32) -> ModelCard:
    """quality = 2 + 2 * mean(image) (so brighter crops score higher); physics = [log2 dose = -2, motion = 0]."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, crop, crop])
    prompt = helper.make_tensor_value_info("prompt", TensorProto.INT64, ["N", 4])
    quality = helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["N"])
    physics = helper.make_tensor_value_info("physics", TensorProto.FLOAT, ["N", 2])
    consts = [
        helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("heads", TensorProto.FLOAT, [1, 2], [-2.0, 0.0]),
        helper.make_tensor("zero_cols", TensorProto.FLOAT, [4, 2], [0.0] * 8),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "two"], ["m2"]),
        helper.make_node("Add", ["m2", "two"], ["quality"]),
        helper.make_node("Cast", ["prompt"], ["pf"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["pf", "zero_cols"], ["pz"]),  # uses the prompt, adds nothing
        helper.make_node("Add", ["pz", "heads"], ["physics"]),
    ]
    graph = helper.make_graph(nodes, "contract", [image, prompt], [quality, physics], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    card = ModelCard(
        name="contract-test", version="1", preprocessing=Preprocessing(crop_size=crop, crops_per_slice=2),
        heads=("ct_dose", "mr_motion_rms_mm"),
        head_info={"ct_dose": {"modality": "CT", "transform": "log2", "range": [-4.32, 0.0], "neutral": 1.0},
                   "mr_motion_rms_mm": {"modality": "MR", "transform": "identity", "range": [0, 12],
                                        "neutral": 0.0}})
    helper.set_model_props(model, {METADATA_KEY: card.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return card
