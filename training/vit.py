"""A plain ViT encoder whose parameter names match timm's ``VisionTransformer``.

MANIQA taps the outputs of several blocks, so the encoder returns the token features of the
requested blocks (class token dropped) instead of a class logit. Names follow timm
(``patch_embed.proj``, ``blocks.i.attn.qkv``, ``blocks.i.mlp.fc1``...) so that an ImageNet
checkpoint loads with a key map that only strips prefixes (see ``pretrained.py``).
Attention is written out (MatMul + Softmax) to keep the exported ONNX graph simple.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT encoder returning the patch tokens of the blocks listed in ``taps``."""

    def __init__(self, img_size: int, patch: int, in_chans: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float, taps: tuple[int, ...]) -> None:
        super().__init__()
        if img_size % patch:
            raise ValueError(f"image size {img_size} is not a multiple of the patch size {patch}")
        if not taps or max(taps) >= depth:
            raise ValueError(f"feature taps {taps} must name blocks below depth {depth}")
        self.grid = img_size // patch
        self.taps = taps
        self.patch_embed = PatchEmbed(patch, in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        # Blocks after the last tap would never influence the output: they are not built.
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(max(taps) + 1))
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> list[Tensor]:
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        h = torch.cat((cls, tokens), dim=1) + self.pos_embed
        taps: list[Tensor] = []
        for i, blk in enumerate(self.blocks):
            h = blk(h)
            if i in self.taps:
                taps.append(h[:, 1:])
        return taps


def _init_weights(module: nn.Module) -> None:
    """timm's ViT init: truncated normal linears, zero biases; trains from scratch stably."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
