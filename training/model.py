"""MANIQA with MedIQA prompts and physical heads, in two sizes from one definition.

Pipeline (Yang et al. 2022, MedIQA 2025): ViT tokens of several blocks, concatenated on channels
-> transposed attention x num_tab -> 1x1 conv -> scale Swin (+ prompt) -> transposed attention
-> 1x1 conv to half -> scale Swin (+ prompt) -> per-token score s (ReLU MLP) and weight w
(sigmoid MLP), q = sum(w s) / sum(w). The physical heads read the mean-pooled final tokens: they
share every feature with the score, which is what makes them an explanation of it.

The ``edge`` size runs one transposed-attention block per stage (``num_tab=1``), MANIQA runs two:
on ONNX Runtime CPU with 2 threads a 7-slice series (28 crops) took 0.152 s median with two and
0.136 s with one (re-measured interleaved, load average 1.2: 0.171 s and 0.145 s, p90 0.23 / 0.19 s;
``scripts/bench_edge_size.py``), and the budget is 0.15 s on a 2-core console. The TAB is a
channel-attention refinement, the cheapest part of the network to halve. ``maniqa-b8`` stays
faithful (two).

Outputs are in the model card's units: ``quality`` on ``score_range``; ``physics`` in each head's
target units (the manifest's ``transform`` applied to the raw label, e.g. log2 dose fraction).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mediqa.training.maniqa_blocks import ScaleSwin, TABlock
from mediqa.training.prompts_embed import PromptEmbedding
from mediqa.training.vit import VisionTransformer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchConfig:
    """Everything needed to rebuild the network; stored as the model card's ``architecture``."""

    size: str = "edge"
    img_size: int = 96
    in_chans: int = 3
    patch: int = 8
    vit_dim: int = 96
    vit_heads: int = 3
    mlp_ratio: float = 4.0
    taps: tuple[int, ...] = (2, 3, 4, 5)  # ViT blocks whose tokens feed MANIQA (MANIQA-B/8: 6..9)
    embed_dim: int = 96  # first scale-Swin width; the second is half of it
    dim_mlp: int = 192
    depths: tuple[int, ...] = (2, 2)
    swin_heads: tuple[int, ...] = (4, 4)
    window: int = 4
    num_tab: int = 2
    scale: float = 0.8
    drop: float = 0.1
    prompts: bool = True
    vocab_sizes: tuple[int, ...] = (3, 3, 11, 15)
    num_physics: int = 0
    score_range: tuple[float, float] = (0.0, 4.0)
    note: str = ""  # why this size departs from MANIQA, carried into the model card's architecture

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ArchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown architecture keys {sorted(unknown)}; known: {sorted(known)}")
        data: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**data)


# The paper's configuration (ViT-B/8 at 224, 3072 -> 768 -> 384 channels) and the embedded edge size.
# edge: num_tab=1 to meet the 0.15 s per 7-slice series budget on 2 CPU threads (see the module docstring).
SIZES: dict[str, ArchConfig] = {
    "maniqa-b8": ArchConfig(size="maniqa-b8", img_size=224, patch=8, vit_dim=768, vit_heads=12, mlp_ratio=4.0,
                            taps=(6, 7, 8, 9), embed_dim=768, dim_mlp=768, depths=(2, 2), swin_heads=(4, 4),
                            window=4, num_tab=2),
    "edge": ArchConfig(num_tab=1, note="num_tab=1 (MANIQA uses 2): fits the 0.15 s budget per 7-slice series "
                                       "(28 crops) on ONNX Runtime CPU, 2 threads"),
}


def arch_for(size: str, **overrides: Any) -> ArchConfig:
    if size not in SIZES:
        raise ValueError(f"unknown model size '{size}'; choose one of {sorted(SIZES)}")
    return dataclasses.replace(SIZES[size], **overrides)


class DualHead(nn.Module):
    """MANIQA's per-token score/weight pair; the weights let distortion-bearing tokens dominate."""

    def __init__(self, dim: int, drop: float) -> None:
        super().__init__()
        self.fc_score = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(drop), nn.Linear(dim, 1), nn.ReLU())
        self.fc_weight = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(drop), nn.Linear(dim, 1),
                                       nn.Sigmoid())

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, C] -> [B]
        s = self.fc_score(tokens).squeeze(-1)
        w = self.fc_weight(tokens).squeeze(-1)
        return (w * s).sum(dim=1) / (w.sum(dim=1) + 1e-6)


class MedIQAManiqa(nn.Module):
    """image [N, C, S, S], prompt [N, 4] int64 -> (quality [N], physics [N, P])."""

    physics_range: Tensor  # buffers, registered in __init__ (declared so that they type as tensors)
    score_range: Tensor

    def __init__(self, arch: ArchConfig, physics_range: Tensor | None = None) -> None:
        super().__init__()
        self.arch = arch
        grid = arch.img_size // arch.patch
        tokens = grid * grid
        self.vit = VisionTransformer(arch.img_size, arch.patch, arch.in_chans, arch.vit_dim, max(arch.taps) + 1,
                                     arch.vit_heads, arch.mlp_ratio, arch.taps)
        d1, d2 = arch.embed_dim, arch.embed_dim // 2
        self.tablock1 = nn.ModuleList(TABlock(tokens, arch.drop) for _ in range(arch.num_tab))
        self.conv1 = nn.Conv2d(arch.vit_dim * len(arch.taps), d1, 1)
        self.swin1 = ScaleSwin(d1, grid, arch.depths, arch.swin_heads, arch.window, arch.dim_mlp, arch.scale,
                               arch.drop)
        self.tablock2 = nn.ModuleList(TABlock(tokens, arch.drop) for _ in range(arch.num_tab))
        self.conv2 = nn.Conv2d(d1, d2, 1)
        self.swin2 = ScaleSwin(d2, grid, arch.depths, arch.swin_heads, arch.window, arch.dim_mlp, arch.scale,
                               arch.drop)
        self.prompt1 = PromptEmbedding(arch.vocab_sizes, d1) if arch.prompts else None
        self.prompt2 = PromptEmbedding(arch.vocab_sizes, d2) if arch.prompts else None
        self.head = DualHead(d2, arch.drop)
        p = arch.num_physics
        self.physics_head = nn.Sequential(nn.LayerNorm(d2), nn.Linear(d2, d2), nn.GELU(), nn.Linear(d2, max(p, 1)))
        rng = physics_range if physics_range is not None else torch.tensor([[0.0, 1.0]] * max(p, 1))
        self.register_buffer("physics_range", rng.float().reshape(-1, 2))
        self.register_buffer("score_range", torch.tensor(arch.score_range, dtype=torch.float32))
        self.grid = grid

    def features(self, image: Tensor, prompt: Tensor) -> Tensor:
        """Final token features [N, H*W, C/2]."""
        x = torch.cat(self.vit(image), dim=2).transpose(1, 2)  # [N, C, tokens]
        for tab in self.tablock1:
            x = tab(x)
        n, c = x.shape[:2]
        x = self.conv1(x.reshape(n, c, self.grid, self.grid))
        x = self.swin1(x, self.prompt1(prompt) if self.prompt1 is not None else None)
        x = x.flatten(2)
        for tab in self.tablock2:
            x = tab(x)
        x = self.conv2(x.reshape(n, -1, self.grid, self.grid))
        x = self.swin2(x, self.prompt2(prompt) if self.prompt2 is not None else None)
        return x.flatten(2).transpose(1, 2)

    def forward(self, image: Tensor, prompt: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.features(image, prompt)
        lo, hi = self.score_range[0], self.score_range[1]
        quality = lo + (hi - lo) * self.head(tokens)
        raw = self.physics_head(tokens.mean(dim=1))[:, : self.arch.num_physics]
        rng = self.physics_range[: self.arch.num_physics]
        physics = rng[:, 0] + (rng[:, 1] - rng[:, 0]) * raw
        return quality, physics


def build_model(arch: ArchConfig | Mapping[str, Any], physics_range: Tensor | None = None) -> MedIQAManiqa:
    cfg = arch if isinstance(arch, ArchConfig) else ArchConfig.from_dict(arch)
    model = MedIQAManiqa(cfg, physics_range)
    logger.debug("built %s: %.2fM parameters", cfg.size, count_parameters(model) / 1e6)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def arch_dict(arch: ArchConfig) -> dict[str, Any]:
    """The architecture as plain JSON types (lists, not tuples): what the model card stores, so that a
    card read back from JSON compares equal to the one written."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(arch).items()}
