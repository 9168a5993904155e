"""How long ``mediqa train`` and ``mediqa data build`` will take, printed before they start.

Training: samples to train x seconds per sample, the rates of the recorded run of the default edge model
(agent/models/MODEL_CARD.md, "How it was made": ``configs/train/edge.yaml`` on 2 CPU cores, torch threads 2,
data set ``default-97aaa1d451c1`` with 2,192 train and 354 val samples; stage 1 took 27.2 min for 36 epochs
of 2,192 samples, stage 2 16.9 min for 24 epochs of 2,192). Each epoch's validation (354 slices, one crop,
no gradient) and checkpointing are inside those rates. They hold for that recipe; a config with another
model, crop size, batch size or thread count says so next to its estimate.

Data build: each task's seconds on one core from a cost model of its work, then the pool's schedule
(longest first, each task to the next free worker, as ``builder._run`` hands them out). CT slices cost
their projection work: one radon transform, two calibration reconstructions, one per dose below 1, and
the full-view plus each sparse-view reconstruction, each proportional to (image side)^2 x views; MR
slices cost per degraded copy per pixel; 3D motion per voxel of its slab. The constants are fits to one
task per source of ``configs/data/default.yaml`` and every task of ``configs/data/tiny.yaml`` timed on
one core of the 2-core development machine (load average below 1, numpy/scipy on one thread as in the
workers): CT 1.5-3.4e-8 s per pixel x view (median 2.1e-8), MR 0.01 s + 3e-7 s per pixel per copy,
3D motion 1.5e-6 s per slab voxel. A pool of workers takes ~2.5 s to start and import the task modules
(1.4-3.6 s measured) and the workers load their sources again, so that and the parent's load time are
added. On a machine busy with other work a build takes longer (a tiny build estimated at 12 s took
13-16 s at load average 1.2-1.8).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mediqa.training.datagen.builder import BuildPlan
    from mediqa.training.datagen.config import DataConfig
    from mediqa.training.datagen.sources import SourceSeries
    from mediqa.training.datagen.tasks import Task
    from mediqa.training.train_config import TrainConfig

RECORD = "agent/models/MODEL_CARD.md: configs/train/edge.yaml, 44.1 min on 2 CPU cores"
RECORDED_TRAIN_SAMPLES = 2192  # per epoch (the train split of default-97aaa1d451c1; samples_per_epoch 6000)
RECORDED_STAGE_SECONDS = {1: (27.2 * 60, 36), 2: (16.9 * 60, 24)}  # stage: (wall seconds, epochs)
SECONDS_PER_SAMPLE = {stage: seconds / (epochs * RECORDED_TRAIN_SAMPLES)
                      for stage, (seconds, epochs) in RECORDED_STAGE_SECONDS.items()}  # 20.7 ms, 19.3 ms
# What the recorded rates depend on, as configs/train/edge.yaml sets it.
RECORDED_RECIPE = {"model.size": "edge", "model.input": "crops", "model.overrides": {}, "crop_size": 96,
                   "threads": 2, "stage1.batch_size": 32, "stage2.batch_size": 32}

CT_SECONDS_PER_PIXEL_VIEW = 2.1e-8
MR_SECONDS_PER_COPY = 0.01
MR_SECONDS_PER_PIXEL_COPY = 3e-7
MOTION3D_SECONDS_PER_VOXEL = 1.5e-6
WORKER_START_SECONDS = 2.5
BUILD_BASIS = ("per-task costs timed on one core of an idle 2-core machine (CT 2.1e-8 s per pixel x view pass, "
               "MR 3e-7 s per pixel per copy, 3D motion 1.5e-6 s per voxel) scheduled on the workers, plus "
               "worker start-up and source loading; training/estimate.py")


@dataclass(frozen=True)
class StageEstimate:
    stage: int
    epochs: int  # still to run
    samples_per_epoch: int
    seconds: float


def stage_estimate(cfg: TrainConfig, stage: int, n_train: int, done_epochs: int = 0) -> StageEstimate:
    """Epochs left x samples per epoch (as the trainer caps them) x the recorded seconds per sample."""
    section = cfg.stage1 if stage == 1 else cfg.stage2
    per_epoch = min(n_train, section.samples_per_epoch or n_train)
    epochs = max(0, section.epochs - done_epochs)
    return StageEstimate(stage, epochs, per_epoch, epochs * per_epoch * SECONDS_PER_SAMPLE[stage])


def recipe_differences(cfg: TrainConfig) -> list[str]:
    """The settings of ``cfg`` that differ from the recorded run's (its rates may not hold for them)."""
    got = {"model.size": cfg.model.size, "model.input": cfg.model.input, "model.overrides": dict(cfg.model.overrides),
           "crop_size": cfg.crop_size, "threads": cfg.threads, "stage1.batch_size": cfg.stage1.batch_size,
           "stage2.batch_size": cfg.stage2.batch_size}
    return [key if key == "model.overrides" else f"{key} {got[key]!r}"
            for key, want in RECORDED_RECIPE.items() if got[key] != want]


def duration(seconds: float) -> str:
    """``12 s``, ``7.5 min``, ``1.3 h``."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def task_seconds(task: Task, src: SourceSeries, cfg: DataConfig) -> float:
    """One task's seconds on one core (the cost model in the module docstring)."""
    height, width = src.volume.shape[1:]
    if task.kind == "ct_slice":
        views = cfg.ct.projection_views
        passes = 3 * views + views * sum(1 for d in cfg.ct.dose_fractions if d < 1.0)
        if cfg.ct.sparse_views:
            passes += views + sum(cfg.ct.sparse_views)
        return CT_SECONDS_PER_PIXEL_VIEW * max(height, width) ** 2 * passes
    if task.kind == "mr_slice":
        mr = cfg.mr
        copies = (int(mr.include_clean) + len(mr.snr) + len(mr.motion_mm) + len(mr.ghost) + len(mr.spike)
                  + len(mr.bias) + len(mr.acceleration) + len(mr.truncation_keep))
        return copies * (MR_SECONDS_PER_COPY + MR_SECONDS_PER_PIXEL_COPY * height * width)
    slab = min(cfg.mr.motion_3d_slab, src.volume.shape[0])
    return MOTION3D_SECONDS_PER_VOXEL * slab * height * width


def schedule(seconds: list[float], workers: int) -> float:
    """Wall time of handing tasks out in this order, each to the first worker that is free."""
    free = [0.0] * max(1, workers)
    for s in seconds:
        heapq.heapreplace(free, free[0] + s)
    return max(free)


def build_seconds(plan: BuildPlan, cfg: DataConfig) -> float:
    """Seconds from the end of planning to the written data set."""
    by_name = {src.spec.name: src for src in plan.sources}
    costs = [task_seconds(task, by_name[task.source.name], cfg) for task in plan.tasks]
    # builder._run hands tasks out by their rough ``cost``, longest first (a stable sort of the plan).
    order = sorted(range(len(plan.tasks)), key=lambda i: -plan.tasks[i].cost)
    start = WORKER_START_SECONDS if plan.workers > 1 else 0.0
    return start + plan.load_seconds + schedule([costs[i] for i in order], plan.workers)
