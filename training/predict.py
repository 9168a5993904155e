"""Score stored samples the way the agent scores slices: its crops, its prompts, mean over crops.

Each sample (one stored slice) goes through ``mediqa.preprocess`` with the agent's
deterministic crop placement; its score is the mean over its ``crops_per_slice`` consecutive crops,
as the agent's learned scorer computes a slice score. Series aggregation lives in ``eval``.
Backend-agnostic (``run(image, prompt) -> (quality, physics)`` in numpy), so the same code scores a
torch checkpoint during validation and evaluation and an exported ONNX file through the engines' ONNX
Runtime CPU backend (the session the agent runs: explicit threads, no spinning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mediqa.engines.backends.onnxrt import OrtBackend
from mediqa.model_card import INPUT_NAMES, OUTPUT_NAMES, ModelCard, read_card
from mediqa.preprocess import prompt_indices
from mediqa.training.trainset import BuiltDataSet, sample_crops, with_crops

if TYPE_CHECKING:
    from mediqa.training.model import MedIQAManiqa

logger = logging.getLogger(__name__)

Runner = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def predict_samples(run: Runner, ds: BuiltDataSet, indices: Sequence[int], card: ModelCard,
                    input_mode: str = "crops", crops: int | None = None, batch: int = 64,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample quality [n] and physics [n, P], each the mean over the sample's crops.

    ``crops`` overrides the card's ``crops_per_slice`` (validation uses 1: the agent's first,
    most-tissue crop); the recipe input is always one whole resized image.
    """
    per = 1 if input_mode == "recipe" else (crops or card.preprocessing.crops_per_slice)
    card = with_crops(card, per)
    images: list[np.ndarray] = []
    prompts: list[np.ndarray] = []
    quality: list[np.ndarray] = []
    physics: list[np.ndarray] = []

    def flush() -> None:
        if images:
            q, p = run(np.concatenate(images), np.concatenate(prompts))
            quality.append(np.asarray(q, dtype=np.float32))
            physics.append(np.asarray(p, dtype=np.float32).reshape(len(q), -1))
            images.clear()
            prompts.clear()

    iterator: Sequence[int] = indices
    if progress:
        from mediqa.training.progress import progress as bar

        iterator = bar(indices, desc="scoring", unit="slice", leave=False)
    pending = 0
    for index in iterator:
        stack = sample_crops(ds, index, card, input_mode)
        images.append(stack)
        prompt = prompt_indices(ds.samples[index].get("prompt") or {}, card)
        prompts.append(np.repeat(prompt[None], len(stack), 0))
        pending += len(stack)
        if pending >= batch:
            flush()
            pending = 0
    flush()
    if not quality:
        return np.zeros(0, np.float32), np.zeros((0, 0), np.float32)
    q_all, p_all = np.concatenate(quality), np.concatenate(physics)
    # slice-major: a slice's crops are consecutive, so a reshape groups them (as the agent does)
    return q_all.reshape(-1, per).mean(1), p_all.reshape(len(q_all) // per, per, -1).mean(1)


def torch_runner(model: MedIQAManiqa, threads: int | None = None) -> Runner:
    import torch

    if threads:
        torch.set_num_threads(threads)

    def run(image: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            q, p = model(torch.from_numpy(image), torch.from_numpy(prompt))
        return q.numpy(), p.numpy()

    return run


@contextmanager
def onnx_runner(path: Path, threads: int = 2) -> Iterator[tuple[Runner, ModelCard]]:
    """The exported model on the engines' ORT CPU backend, as the agent loads it; closed on exit."""
    card = read_card(path)
    image_name, prompt_name = INPUT_NAMES
    quality_name, physics_name = OUTPUT_NAMES
    with OrtBackend(path, "cpu", threads=threads) as backend:

        def run(image: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = backend.infer({image_name: image, prompt_name: prompt})
            return out[quality_name], out[physics_name]

        yield run, card
