"""Read a built data set (docs/dataset-format.md) and serve model-ready crops to the trainers.

The manifest is the only contract: stored images are physical units, so every sample goes through
``preprocess_np`` exactly as the agent's slices will. Training takes random native-resolution crops
(plus flips, which do not change image quality); evaluation takes the card's fixed grid crops.
Targets: each physical label through its head's ``transform`` (null stays NaN = head does not apply).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mediqa.agent.errors import MediqaError
from mediqa.agent.scoring.model_card import Preprocessing
from mediqa.training.preprocess_np import minmax_unit, prompt_vector, resize_whole, to_model_input
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

TRANSFORMS = {"log2": math.log2, "log10": math.log10, "log": math.log, "ln": math.log,
              "identity": float, "none": float, "linear": float}


@dataclass(frozen=True)
class BuiltDataSet:
    root: Path
    manifest: Mapping[str, Any]
    images: np.ndarray  # [N, S, S] float32, memory-mapped

    @property
    def samples(self) -> list[dict[str, Any]]:
        return self.manifest["samples"]

    @property
    def heads(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("heads", []))

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "unknown"))

    def split(self, name: str) -> list[int]:
        return [s["index"] for s in self.samples if s["split"] == name]

    def physics_range(self) -> torch.Tensor:
        return torch.tensor([[float(h["range"][0]), float(h["range"][1])] for h in self.heads] or [[0.0, 1.0]])

    def targets(self, index: int) -> np.ndarray:
        """Transformed physical labels of one sample, NaN where a head does not apply."""
        labels = self.samples[index].get("labels", {})
        return np.array([head_target(h, labels.get(h["name"])) for h in self.heads], dtype=np.float32)


def head_target(head: Mapping[str, Any], raw: float | None) -> float:
    if raw is None:
        return math.nan
    name = str(head.get("transform") or "identity").lower()
    if name not in TRANSFORMS:
        raise MediqaError(f"head '{head['name']}' has unknown transform '{name}'", f"use one of {sorted(TRANSFORMS)}")
    return float(TRANSFORMS[name](float(raw)))


def open_dataset(path: Path) -> BuiltDataSet:
    """``path`` is a built data set, or a folder of them (the newest complete one is used)."""
    root = path
    if not (path / "manifest.json").is_file():
        found = sorted((p.parent for p in path.glob("*/manifest.json")), key=lambda p: p.stat().st_mtime)
        if not found:
            raise MediqaError(f"no built data set (manifest.json) under {path}", "run `mediqa data build` first")
        root = found[-1]
    manifest = json.loads((root / "manifest.json").read_text())
    images = np.load(root / "images.npy", mmap_mode="r")
    if images.shape[0] != len(manifest["samples"]):
        raise MediqaError(f"{root}: {images.shape[0]} images for {len(manifest['samples'])} samples",
                          "rebuild the data set")
    logger.info("data set %s: %d samples, %d heads", root.name, images.shape[0], len(manifest.get("heads", [])))
    return BuiltDataSet(root, manifest, images)


def sample_input(ds: BuiltDataSet, index: int, pre: Preprocessing, input_mode: str) -> np.ndarray:
    """Whole stored image of one sample -> [C, S, S] model units (before cropping)."""
    sample = ds.samples[index]
    image = np.asarray(ds.images[index], dtype=np.float32)
    if input_mode == "recipe":  # released MedIQA: whole image resized, no windowing
        return minmax_unit(resize_whole(image, pre.crop_size), pre.channels)
    return to_model_input(image, sample["modality"], pre, sample.get("norm"))


class CropDataset(Dataset):
    """Training view: (image [C,s,s], prompt [4], physics targets [P], quality) per sample."""

    def __init__(self, ds: BuiltDataSet, indices: Sequence[int], pre: Preprocessing,
                 vocabulary: Mapping[str, Sequence[str]], input_mode: str = "crops",
                 quality: Mapping[int, float] | None = None, seed: int = 0) -> None:
        self.ds, self.indices, self.pre, self.vocab = ds, list(indices), pre, vocabulary
        self.input_mode = input_mode
        self.quality = quality
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        index = self.indices[i]
        sample = self.ds.samples[index]
        img = sample_input(self.ds, index, self.pre, self.input_mode)
        s = self.pre.crop_size
        h, w = img.shape[-2:]
        if h < s or w < s:  # stored crops smaller than the model input: pad with the background value
            img = np.pad(img, ((0, 0), (0, max(0, s - h)), (0, max(0, s - w))), mode="edge")
            h, w = img.shape[-2:]
        y, x = int(self.rng.integers(0, h - s + 1)), int(self.rng.integers(0, w - s + 1))
        img = img[:, y:y + s, x:x + s]
        if self.rng.random() < 0.5:
            img = img[:, :, ::-1]
        if self.rng.random() < 0.5:
            img = img[:, ::-1, :]
        prompt = prompt_vector(self.vocab, sample.get("prompt", {}))
        q = self.quality[index] if self.quality is not None else float(sample.get("quality", math.nan))
        return (torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(prompt),
                torch.from_numpy(self.ds.targets(index)), torch.tensor(q, dtype=torch.float32))


def epoch_subset(indices: Sequence[int], cap: int | None, seed: int, epoch: int) -> list[int]:
    """A fresh random subset per epoch: bounds the epoch's time whatever the data set size."""
    rng = np.random.default_rng(seed * 1000 + epoch)
    order = rng.permutation(len(indices))
    chosen = order if cap is None or cap >= len(indices) else order[:cap]
    return [indices[int(i)] for i in chosen]
