"""Building engines: FP16 ONNX -> TensorRT plan -> accuracy gate -> cache install (not named build/: .gitignore)."""
