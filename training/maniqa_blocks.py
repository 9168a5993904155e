"""MANIQA's two building blocks: transposed (channel) attention and the scale Swin block.

Written after Yang et al., CVPRW 2022 (github.com/IIGROUP/MANIQA, ``models/maniqa.py`` and
``models/swin.py``), in plain torch so that the ONNX graph holds only MatMul / Softmax /
LayerNormalization and no data-dependent control flow. Two deliberate departures, both noted where
they happen: the transposed-attention output is not re-scrambled by MANIQA's
``transpose(1, 2).reshape(B, C, N)`` (a layout slip, not part of the method), and the scale Swin
block adds the MedIQA prompt embedding to the tokens after each layer's scaled residual.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


class TABlock(nn.Module):
    """Transposed attention: a channel x channel attention map, linear maps over the token axis.

    Attention across channels lets the block mix the ViT layers' features (which channels agree on a
    distortion) at a cost linear in the number of tokens' square, not in the image size's square.
    """

    def __init__(self, tokens: int, drop: float = 0.1) -> None:
        super().__init__()
        self.c_q = nn.Linear(tokens, tokens)
        self.c_k = nn.Linear(tokens, tokens)
        self.c_v = nn.Linear(tokens, tokens)
        self.norm_fact = tokens**-0.5
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C, N]
        q, k, v = self.c_q(x), self.c_k(x), self.c_v(x)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.norm_fact, dim=-1)  # [B, C, C]
        return x + self.proj_drop(attn @ v)


def window_partition(x: Tensor, window: int) -> Tensor:
    """[B, H, W, C] -> [B * nW, window * window, C]."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """[B * nW, window * window, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> Tensor:
    """Additive mask that stops SW-MSA attending across the wrap-around seam of the cyclic shift."""
    img = torch.zeros(1, h, w, 1)
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in spans:
        for ws in spans:
            img[:, hs, ws, :] = label
            label += 1
    win = window_partition(img, window).squeeze(-1)  # [nW, window*window]
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.ne(0).float() * -100.0


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with Swin's relative position bias."""

    relative_position_index: Tensor  # a buffer, registered in __init__

    def __init__(self, dim: int, window: int, heads: int, drop: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        flat = coords.flatten(1)
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)
        index = rel[..., 0] * (2 * window - 1) + rel[..., 1]
        self.register_buffer("relative_position_index", index, persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:  # x: [B*nW, n, C]
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(-1, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape(-1, self.heads, n, n)
        out = (torch.softmax(attn, dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(out))


class SwinBlock(nn.Module):
    """One W-MSA (shift 0) or SW-MSA (shift window/2) block with its MLP, pre-norm residuals."""

    def __init__(self, dim: int, grid: int, heads: int, window: int, shift: int, dim_mlp: int,
                 drop: float = 0.0) -> None:
        super().__init__()
        if grid <= window:  # as in Swin: a window covering the grid needs no shift
            window, shift = grid, 0
        if grid % window:
            raise ValueError(f"token grid {grid} is not a multiple of the Swin window {window}")
        self.grid, self.window, self.shift = grid, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim_mlp), nn.GELU(), nn.Dropout(drop),
                                 nn.Linear(dim_mlp, dim), nn.Dropout(drop))
        mask = shifted_window_mask(grid, grid, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, H*W, C]
        b, _, c = x.shape
        h = self.norm1(x).reshape(b, self.grid, self.grid, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = window_reverse(self.attn(window_partition(h, self.window), self.attn_mask),
                           self.window, self.grid, self.grid)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(b, -1, c)
        return x + self.mlp(self.norm2(x))


class SwinLayer(nn.Module):
    """``depth`` alternating W-MSA / SW-MSA blocks followed by MANIQA's 3x3 conv + ReLU."""

    def __init__(self, dim: int, grid: int, depth: int, heads: int, window: int, dim_mlp: int,
                 drop: float) -> None:
        super().__init__()
        self.grid = grid
        self.blocks = nn.ModuleList(
            SwinBlock(dim, grid, heads, window, 0 if i % 2 == 0 else window // 2, dim_mlp, drop)
            for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        b, n, c = x.shape
        img = x.transpose(1, 2).reshape(b, c, self.grid, self.grid)
        return F.relu(self.conv(img)).flatten(2).transpose(1, 2)


class ScaleSwin(nn.Module):
    """MANIQA's scale Swin block: each layer's output is scaled (0.8) and added to its input.

    MedIQA adds the prompt embedding to every token after each of these residuals; ``prompt`` is the
    summed attribute embedding [B, C] (or None for the prompt-free ablation).
    """

    def __init__(self, dim: int, grid: int, depths: tuple[int, ...], heads: tuple[int, ...], window: int,
                 dim_mlp: int, scale: float = 0.8, drop: float = 0.1) -> None:
        super().__init__()
        self.grid, self.scale = grid, scale
        self.dropout = nn.Dropout(drop)
        self.layers = nn.ModuleList(
            SwinLayer(dim, grid, d, h, window, dim_mlp, 0.0) for d, h in zip(depths, heads, strict=True))

    def forward(self, x: Tensor, prompt: Tensor | None) -> Tensor:  # x: [B, C, H, W]
        b, c = x.shape[:2]
        tokens = self.dropout(x).flatten(2).transpose(1, 2)
        for layer in self.layers:
            tokens = self.scale * layer(tokens) + tokens
            if prompt is not None:
                tokens = tokens + prompt.unsqueeze(1)
        return tokens.transpose(1, 2).reshape(b, c, self.grid, self.grid)
