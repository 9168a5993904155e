"""Score stored samples the way the agent scores slices: fixed grid crops, mean over crops.

Backend-agnostic (``run(image, prompt) -> (quality, physics)`` in numpy), so the same code scores a
torch checkpoint during validation and evaluation and an exported ONNX file through ONNX Runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from mediqa.agent.scoring.model_card import ModelCard, Preprocessing
from mediqa.training.preprocess_np import grid_crops, prompt_vector
from mediqa.training.trainset import BuiltDataSet, sample_input

logger = logging.getLogger(__name__)

Runner = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def predict_samples(run: Runner, ds: BuiltDataSet, indices: Sequence[int], pre: Preprocessing,
                    vocabulary: Mapping[str, Sequence[str]], input_mode: str = "crops", crops: int | None = None,
                    batch: int = 64, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample quality [n] and physics [n, P], each the mean over the sample's crops."""
    count = crops or pre.crops_per_slice
    per = 1 if input_mode == "recipe" else count  # the recipe scores the whole (resized) image once
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
        img = sample_input(ds, index, pre, input_mode)
        stack = img[None] if per == 1 and img.shape[-1] == pre.crop_size else grid_crops(img, pre.crop_size, per)
        images.append(stack.astype(np.float32))
        prompts.append(np.repeat(prompt_vector(vocabulary, ds.samples[index].get("prompt", {}))[None], per, 0))
        pending += per
        if pending >= batch:
            flush()
            pending = 0
    flush()
    q_all = np.concatenate(quality) if quality else np.zeros(0, np.float32)
    p_all = np.concatenate(physics) if physics else np.zeros((0, 0), np.float32)
    return q_all.reshape(-1, per).mean(1), p_all.reshape(len(q_all) // per, per, -1).mean(1)


def torch_runner(model: object, threads: int | None = None) -> Runner:
    import torch

    if threads:
        torch.set_num_threads(threads)

    def run(image: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            q, p = model(torch.from_numpy(image), torch.from_numpy(prompt))  # type: ignore[operator]
        return q.numpy(), p.numpy()

    return run


def onnx_runner(path: Path, threads: int = 2) -> tuple[Runner, ModelCard]:
    """An ORT session on CPU as the agent configures it (fixed threads, no spinning)."""
    import onnxruntime as ort
    from mediqa.export.onnx import read_model_card

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(image: np.ndarray, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, p = sess.run(["quality", "physics"], {"image": image, "prompt": prompt})
        return q, p

    return run, read_model_card(path)
