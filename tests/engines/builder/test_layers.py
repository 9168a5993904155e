"""Layer precisions from IEngineInspector JSON, TensorRT 10.x and 11.x schemas."""

from __future__ import annotations

import json

from mediqa.engines.builder.layers import describe_counts, layer_precisions

TRT10 = {"Layers": [
    {"Name": "conv", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "a", "Format/Datatype": "Row major linear FP16 format"}]},
    {"Name": "ln", "LayerType": "Normalization",
     "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear FP32 format"}]},
    {"Name": "gather", "LayerType": "Gather", "Outputs": [{"Name": "c", "Format/Datatype": "Int64"}]}],
    "Bindings": ["image", "quality"]}
TRT11 = {"Layers": [
    {"Name": "mm", "LayerType": "MatrixMultiply", "Outputs": [{"Name": "a", "DataType": "Half", "Format": "kLINEAR"}]},
    {"Name": "sm", "LayerType": "Softmax", "Outputs": [{"Name": "b", "DataType": "Float", "Format": "kLINEAR"}]}],
    "I/O Tensors": [{"Name": "image", "IOMode": "Input", "DataType": "Float"}]}


def test_trt10_schema():
    summary = layer_precisions(json.dumps(TRT10))
    assert summary["counts"] == {"fp16": 1, "fp32": 1, "int64": 1}
    assert summary["layers"][1] == {"name": "ln", "type": "Normalization", "precision": "fp32"}


def test_trt11_schema():
    summary = layer_precisions(json.dumps(TRT11))
    assert summary["counts"] == {"fp16": 1, "fp32": 1}
    assert "1 fp16" in describe_counts(summary)


def test_names_only_and_garbage():
    assert layer_precisions(json.dumps({"Layers": ["a", "b"]}))["counts"] == {"unknown": 2}
    assert "error" in layer_precisions("not json")
