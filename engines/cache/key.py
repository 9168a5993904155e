"""The engine cache key: sha256 over everything that makes a plan valid.

model sha256 + precision recipe + TensorRT version + GPU identity. Change any one and the key
changes, so a retrained model, another TensorRT or another GPU model never picks up a stale plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mediqa.engines.fp16 import fp32_op_block_list
from mediqa.engines.gpu import GpuIdentity

if TYPE_CHECKING:
    from mediqa.model_card import ModelCard

TYPING_MODES = ("strong", "flag")


@dataclass(frozen=True)
class BuildRecipe:
    """How a plan is built. ``typing``: ``strong`` = strongly typed network from the FP16 ONNX (TRT 10
    and 11); ``flag`` = FP32 network + ``BuilderFlag.FP16`` (TRT 10 only; removed in 11)."""

    precision: str = "fp16"
    typing: str = "strong"
    keep_io_types: bool = True
    fp32_ops: tuple[str, ...] = ()
    min_batch: int = 1
    opt_batch: int = 28
    max_batch: int = 28

    @classmethod
    def default(cls, max_batch: int, typing: str = "strong") -> BuildRecipe:
        if typing not in TYPING_MODES:
            raise ValueError(f"typing must be one of {TYPING_MODES}, got {typing!r}")
        return cls(typing=typing, fp32_ops=fp32_op_block_list(), opt_batch=max_batch, max_batch=max_batch)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fp32_ops"] = list(self.fp32_ops)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildRecipe:
        return cls(**{**data, "fp32_ops": tuple(data.get("fp32_ops", ()))})


def key_components(model_sha256: str, recipe: BuildRecipe, tensorrt_version: str,
                   gpu: GpuIdentity) -> dict[str, Any]:
    return {"model_sha256": model_sha256, "recipe": recipe.to_dict(),
            "tensorrt_version": tensorrt_version, "gpu": gpu.key_fields()}


def cache_key(model_sha256: str, recipe: BuildRecipe, tensorrt_version: str, gpu: GpuIdentity) -> str:
    """Hex sha256 of the canonical JSON of the components."""
    canonical = json.dumps(key_components(model_sha256, recipe, tensorrt_version, gpu),
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def series_batch(card: ModelCard | None, slices: int) -> int:
    """Batch of one series: slices x crops per slice (from the model card; 1 crop without a card)."""
    crops = getattr(getattr(card, "preprocessing", None), "crops_per_slice", 1) or 1
    return max(1, int(slices) * int(crops))
