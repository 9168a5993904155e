"""The inference backends a configuration may name, in the default fallback order.

Part of the contract floor: the agent's config validates ``scoring.backends`` against this list and
the engine chain dispatches on it, so a name exists in one place only.
"""

from __future__ import annotations

BACKEND_NAMES: tuple[str, ...] = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
