"""Factorized prompt embedding: one learned table per image attribute, summed.

MedIQA's released code embeds one of 64 joint (modality, anatomy, type) ids; a sum of per-attribute
embeddings shares what it learns about "MR" across anatomies and so gives a sensible vector for a
combination never seen in training. Index 0 of every vocabulary is ``unknown`` (model card), which
the agent uses whenever an attribute cannot be read from the header.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

logger = logging.getLogger(__name__)


class PromptEmbedding(nn.Module):
    """prompt [N, 4] int64 (dimension, modality, anatomy, image_type) -> [N, dim]."""

    def __init__(self, vocab_sizes: tuple[int, ...], dim: int) -> None:
        super().__init__()
        tables = [nn.Embedding(size, dim) for size in vocab_sizes]
        for table in tables:
            nn.init.normal_(table.weight, std=0.02)
        self.tables = nn.ModuleList(tables)

    def forward(self, prompt: Tensor) -> Tensor:
        out = self.tables[0](prompt[:, 0])
        for i in range(1, len(self.tables)):
            out = out + self.tables[i](prompt[:, i])
        return out
