"""The accuracy gate and its golden set: a faster backend is installed only if it decides like FP32."""
