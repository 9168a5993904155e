"""Load ImageNet ViT weights from a local timm-style file into the MANIQA encoder.

MANIQA-B/8 starts from timm's ``vit_base_patch8_224``; nothing is downloaded here (no network on a
scanner or in this workplace): the user passes the file. The key map strips wrapper prefixes
(``module.``, ``model.``, ``backbone.``, ``vit.``), drops the classifier (``head``, final
``norm``/``fc_norm``, which MANIQA never uses) and the blocks past the last tapped one, resamples the
position grid when the input size differs, and refuses shape mismatches with the key named.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mediqa.errors import ModelError
from mediqa.training.vit import VisionTransformer

logger = logging.getLogger(__name__)

PREFIXES = ("module.", "model.", "backbone.", "vit.", "encoder.")
DROPPED = ("head.", "head_dist.", "norm.", "fc_norm.", "pre_logits.")


def map_timm_keys(state: Mapping[str, Tensor], depth: int) -> dict[str, Tensor]:
    """timm ``VisionTransformer`` state dict -> our encoder's names (blocks >= depth dropped)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = key
        stripped = True
        while stripped:
            stripped = False
            for prefix in PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], True
        if name.startswith(DROPPED):
            continue
        if name.startswith("blocks."):
            if int(name.split(".")[1]) >= depth:
                continue
            # timm >= 0.9 may carry layer-scale / separate q,k norms; B/8 has neither (Identity).
            if ".ls1." in name or ".ls2." in name or ".q_norm." in name or ".k_norm." in name:
                raise ModelError(f"unsupported ViT variant (key {key})", "use a plain timm ViT checkpoint")
        out[name] = value
    return out


def resample_pos_embed(pos: Tensor, grid: int) -> Tensor:
    """[1, 1 + g*g, D] -> [1, 1 + grid*grid, D] (bicubic), keeping the class-token position."""
    cls, tokens = pos[:, :1], pos[:, 1:]
    old = int(math.isqrt(tokens.shape[1]))
    if old == grid:
        return pos
    img = tokens.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat((cls, img.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)), dim=1)


def load_vit_weights(encoder: VisionTransformer, source: Path | Mapping[str, Tensor]) -> list[str]:
    """Copy a timm-style ViT state dict (file or mapping) into ``encoder``; return missing keys."""
    if isinstance(source, Path):
        if not source.is_file():
            raise ModelError(f"ViT weights file {source} not found", "pass a local timm checkpoint")
        state = torch.load(source, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        elif isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
            state = state["model"]
    else:
        state = source
    mapped = map_timm_keys(state, len(encoder.blocks))
    if "pos_embed" in mapped:
        mapped["pos_embed"] = resample_pos_embed(mapped["pos_embed"], encoder.grid)
    own = encoder.state_dict()
    for name, value in mapped.items():
        if name not in own:
            raise ModelError(f"ViT weights have unexpected key '{name}'", "is it a timm VisionTransformer?")
        if tuple(own[name].shape) != tuple(value.shape):
            raise ModelError(f"ViT weight '{name}' has shape {tuple(value.shape)}, model expects "
                             f"{tuple(own[name].shape)}", "ImageNet weights fit only the maniqa-b8 size")
    missing = sorted(set(own) - set(mapped))
    encoder.load_state_dict(mapped, strict=False)
    logger.info("loaded %d ViT tensors (%d missing: %s)", len(mapped), len(missing), missing[:5])
    return missing
