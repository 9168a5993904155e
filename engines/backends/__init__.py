"""Inference backends (TensorRT, ONNX Runtime CUDA, ONNX Runtime CPU) and the fallback chain."""
