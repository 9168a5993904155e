"""A tiny MedIQA-contract model for engine tests, exported by code (no binary fixture committed).

ViT-ish: patch embedding, prompt embedding added to every token, one pre-norm transformer block with
LayerNorm + softmax attention + GELU MLP, mean pooling. The score also depends on a high-frequency
energy term so clean images score high and noisy ones low: decisions in the golden set are then
meaningful (both sides of the retake threshold), while the attention path exercises FP16 rounding.
Inputs/outputs follow the ONNX contract: image float32 [N,3,S,S], prompt int64 [N,4] ->
quality float32 [N], physics float32 [N,2].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 32
CHANNELS = 3
CROPS = 2
SLICES = 3
BATCH = SLICES * CROPS  # one series


def build_tiny_model():  # -> torch.nn.Module (torch imported lazily: only tests and the GPU script need it)
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.ln1 = nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.ln2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(n, t, d))
            return x + self.mlp(self.ln2(x))

    class TinyIQA(nn.Module):
        def __init__(self, dim: int = 32, patch: int = 8) -> None:
            super().__init__()
            self.embed = nn.Conv2d(CHANNELS, dim, patch, stride=patch)
            self.pos = nn.Parameter(torch.randn(1, (SIZE // patch) ** 2, dim) * 0.02)
            self.prompt = nn.Embedding(4 * 16, dim)
            self.register_buffer("offsets", torch.arange(4) * 16)
            self.block = Block(dim, heads=2)
            self.norm = nn.LayerNorm(dim)
            self.quality_head = nn.Linear(dim, 1)
            self.physics_head = nn.Linear(dim, 2)

        def forward(self, image: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            tokens = self.embed(image).flatten(2).transpose(1, 2) + self.pos
            tokens = tokens + self.prompt(prompt + self.offsets).sum(1, keepdim=True)
            feat = self.norm(self.block(tokens)).mean(1)
            lap = 4 * image[:, :, 1:-1, 1:-1] - image[:, :, :-2, 1:-1] - image[:, :, 2:, 1:-1] \
                - image[:, :, 1:-1, :-2] - image[:, :, 1:-1, 2:]
            rough = lap.abs().mean(dim=(1, 2, 3))
            logit = 2.5 - 6.0 * rough + 0.5 * self.quality_head(feat).squeeze(-1)
            return 4.0 * torch.sigmoid(logit), self.physics_head(feat)

    torch.manual_seed(0)
    return TinyIQA().eval()


def export_tiny_model(path: Path, thresholds: dict | None = None) -> Path:
    """Export to ONNX opset 17 with a dynamic batch and a model card in the metadata."""
    import warnings

    import onnx
    import torch

    from mediqa.model_card import METADATA_KEY, ModelCard, Preprocessing

    model = build_tiny_model()
    image = torch.zeros(2, CHANNELS, SIZE, SIZE)
    prompt = torch.zeros(2, 4, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (image, prompt), str(path), input_names=["image", "prompt"],
                          output_names=["quality", "physics"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "N"} for n in ("image", "prompt", "quality", "physics")})
    proto = onnx.load(str(path))
    card = ModelCard(name="tiny-test", version="1", preprocessing=Preprocessing(crop_size=SIZE, crops_per_slice=CROPS),
                     heads=("noise", "dose"), thresholds=thresholds or {"retake_below": 2.0})
    proto.metadata_props.add(key=METADATA_KEY, value=card.to_json())
    onnx.save(proto, str(path))
    return path


def phantom(seed: int, noise: float) -> np.ndarray:
    """One series worth of prepared inputs: smooth phantom crops in [-1, 1] plus white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = np.stack([0.6 * np.sin(2 * np.pi * (xx * (1 + i % 3) + yy * 0.5 + rng.uniform()))
                     * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2)) for i in range(BATCH)])
    img = np.repeat(base[:, None], CHANNELS, axis=1) + rng.normal(0, noise, (BATCH, CHANNELS, SIZE, SIZE))
    return np.clip(img, -1, 1).astype(np.float32)


def golden_cases() -> list[tuple[str, dict[str, np.ndarray], str]]:
    """Clean and degraded series: noise std 0 / 0.02 (clean), 0.25 / 0.5 (degraded)."""
    prompt = np.tile(np.array([[2, 1, 1, 1]], np.int64), (BATCH, 1))
    levels = [("clean-a", 0.0, "clean"), ("clean-b", 0.02, "clean"),
              ("noisy-a", 0.25, "degraded"), ("noisy-b", 0.5, "degraded")]
    return [(name, {"image": phantom(i, noise), "prompt": prompt}, group)
            for i, (name, noise, group) in enumerate(levels)]


def provenance() -> dict:
    return {"source": "synthetic phantoms (tests/engines/tiny_model.py)", "levels": json.dumps([0, .02, .25, .5])}
