"""Read a built data set (docs/dataset-format.md) and serve model-ready crops to the trainers.

The manifest is the only contract: stored images are physical units, and every sample goes through
the agent's own preprocessing (``mediqa.preprocess``), so a model learns on exactly the
windows, MR normalisation, padding and prompt indices it will get at run time. Training takes random
tissue-placed crops (the agent module's ``rng`` placement, plus flips, which do not change image
quality); evaluation and validation take the agent's deterministic placement (see ``sample_crops``).
Targets: each physical label through its head's ``transform`` (null stays NaN = head does not apply).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mediqa.errors import MediqaError
from mediqa.model_card import ModelCard
from mediqa.preprocess import prepare, prompt_indices
from mediqa.training.recipe_np import recipe_input

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


def find_dataset(path: Path) -> Path:
    """The data set ``path`` names: itself when it is one, else the newest complete one inside it."""
    if (path / "manifest.json").is_file():
        return path
    found = sorted((p.parent for p in path.glob("*/manifest.json")), key=lambda p: p.stat().st_mtime)
    if not found:
        raise MediqaError(f"no built data set (manifest.json) under {path}",
                          "run `mediqa data build --config ...` first")
    return found[-1]


def read_manifest(root: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    return manifest


def open_dataset(path: Path) -> BuiltDataSet:
    """``path`` is a built data set, or a folder of them (the newest complete one is used)."""
    root = find_dataset(path)
    manifest = read_manifest(root)
    images = np.load(root / "images.npy", mmap_mode="r")
    if images.shape[0] != len(manifest["samples"]):
        raise MediqaError(f"{root}: {images.shape[0]} images for {len(manifest['samples'])} samples",
                          "rebuild the data set")
    logger.info("data set %s: %d samples, %d heads", root.name, images.shape[0], len(manifest.get("heads", [])))
    return BuiltDataSet(root, manifest, images)


def with_crops(card: ModelCard, count: int) -> ModelCard:
    """The same card asking for ``count`` crops per slice (training: 1 per item; fast validation: 1)."""
    if count == card.preprocessing.crops_per_slice:
        return card
    return dataclasses.replace(card, preprocessing=dataclasses.replace(card.preprocessing, crops_per_slice=count))


def sample_crops(ds: BuiltDataSet, index: int, card: ModelCard, input_mode: str,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """One stored sample -> float32 [n, C, S, S] model input, n = the card's ``crops_per_slice``.

    ``crops``: the agent's ``prepare`` on the stored slice (CT windows, MR mapped with the sample's
    ``norm``, pad -1, tissue-placed crops: random with ``rng``, the agent's deterministic ones without).
    ``recipe``: the released MedIQA input, one whole resized image (n = 1), for the comparison row only.
    """
    sample = ds.samples[index]
    image = np.asarray(ds.images[index], dtype=np.float32)
    if input_mode == "recipe":
        return recipe_input(image, card.preprocessing.crop_size, card.preprocessing.channels)[None]
    if input_mode != "crops":
        raise MediqaError(f"unknown input mode '{input_mode}'", "use 'crops' or 'recipe'")
    norm = sample.get("norm")
    mr_norm = (float(norm[0]), float(norm[1])) if norm is not None else None
    crops, _ = prepare(image[None], sample["modality"], card, rng=rng, mr_norm=mr_norm)
    return crops


class CropDataset(Dataset):
    """Training view: (image [C,s,s], prompt [4], physics targets [P], quality) per sample.

    One random crop per item (each epoch sees a different one), placed by the agent's random
    tissue placement, then flipped at random.
    """

    def __init__(self, ds: BuiltDataSet, indices: Sequence[int], card: ModelCard, input_mode: str = "crops",
                 seed: int = 0) -> None:
        self.ds, self.indices, self.input_mode = ds, list(indices), input_mode
        self.card = with_crops(card, 1)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        index = self.indices[i]
        sample = self.ds.samples[index]
        img = sample_crops(self.ds, index, self.card, self.input_mode, rng=self.rng)[0]
        if self.rng.random() < 0.5:
            img = img[:, :, ::-1]
        if self.rng.random() < 0.5:
            img = img[:, ::-1, :]
        prompt = prompt_indices(sample.get("prompt") or {}, self.card)
        q = float(sample.get("quality", math.nan))
        return (torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(prompt),
                torch.from_numpy(self.ds.targets(index)), torch.tensor(q, dtype=torch.float32))


def epoch_subset(indices: Sequence[int], cap: int | None, seed: int, epoch: int) -> list[int]:
    """A fresh random subset per epoch: bounds the epoch's time whatever the data set size."""
    rng = np.random.default_rng(seed * 1000 + epoch)
    order = rng.permutation(len(indices))
    chosen = order if cap is None or cap >= len(indices) else order[:cap]
    return [indices[int(i)] for i in chosen]


def is_undegraded(sample: Mapping[str, Any]) -> bool:
    """The source as acquired: the copy with no degradation, or a CT re-simulated at its full dose."""
    degradation = sample.get("degradation") or {}
    if degradation.get("type") == "none":
        return True
    return degradation.get("type") == "ct_dose" and (degradation.get("params") or {}).get("dose_fraction") == 1.0


def with_clean_share(subset: list[int], clean: Sequence[int], share: float, seed: int, epoch: int) -> list[int]:
    """``subset`` with its last ``share`` of places given to undegraded samples (drawn with replacement).

    Why: the train split holds one undegraded copy per source slice against up to ~20 degraded ones
    (5 % of the MR samples), so a model learns that a typical MR image is mediocre, and clean real MR
    from an unseen vendor lands near the retake line. Repeats see fresh random crops and flips.
    """
    if not 0.0 <= share < 1.0:
        raise MediqaError(f"clean_share {share} is outside [0, 1)", "use e.g. 0.2 (a fifth of each epoch)")
    n = round(share * len(subset))
    if n == 0 or not clean:
        return subset
    rng = np.random.default_rng(seed * 1000 + epoch + 7)
    drawn = [int(clean[int(i)]) for i in rng.integers(0, len(clean), n)]
    mixed = subset[: len(subset) - n] + drawn
    return [mixed[int(i)] for i in rng.permutation(len(mixed))]
