"""Inference backends (TensorRT, ONNX Runtime CUDA, ONNX Runtime CPU); the fallback chain over them is ``chain.py``."""
