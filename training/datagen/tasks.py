"""Units of work for the process pool: one CT slice, one MR slice, or one 3D MR motion level.

A task carries only names and numbers (cheap to pickle); the worker loads its source itself (cached per
process) and seeds its generator from (seed, source, slice, degradation, level), so results do not depend
on which worker ran what, or when.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mediqa.training.datagen.config import DataConfig, SourceSpec
from mediqa.training.datagen.sample import Sample, make_sample
from mediqa.training.datagen.sources import SourceSeries, load_source
from mediqa.training.datagen.tasks_ct import ct_slice_degradations
from mediqa.training.datagen.tasks_mr import mr_motion3d_samples, mr_slice_degradations
from mediqa.training.labels.proxy import ProxyMapping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    kind: str
    source: SourceSpec
    slice_index: int  # for mr_motion3d: the slab's centre partition
    level: int = 0  # for mr_motion3d: index into mr.motion_3d_mm

    @property
    def cost(self) -> float:
        """Rough seconds on one core, to start the longest tasks first."""
        return {"ct_slice": 8.0, "mr_motion3d": 6.0}.get(self.kind, 0.3)


def plan_tasks(cfg: DataConfig, sources: list[SourceSeries]) -> list[Task]:
    """All tasks of a build, in the order their samples are stored."""
    tasks: list[Task] = []
    for src in sources:
        picks = src.chosen_slices()
        if src.modality == "CT":
            tasks += [Task("ct_slice", src.spec, k) for k in picks]
            continue
        tasks += [Task("mr_slice", src.spec, k) for k in picks]
        if src.spec.acquisition_3d and src.volume.shape[0] >= 8:
            centre = src.volume.shape[0] // 2
            tasks += [Task("mr_motion3d", src.spec, centre, i) for i in range(len(cfg.mr.motion_3d_mm))]
    return tasks


def run_task(job: tuple[Task, DataConfig]) -> list[Sample]:
    """Pool entry point: every sample of one task, in a fixed order."""
    task, cfg = job
    src = load_source(task.source, cfg.data_root_path())
    mapping = ProxyMapping(tuple((float(a), float(b)) for a, b in cfg.quality.anchors))
    if task.kind == "ct_slice":
        made = ct_slice_degradations(src, task.slice_index, cfg)
    elif task.kind == "mr_slice":
        made = mr_slice_degradations(src, task.slice_index, cfg)
    else:
        made = mr_motion3d_samples(src, task.slice_index, task.level, cfg)
    return [make_sample(src, k, level, deg, clean, cfg.crop_size, mapping) for k, level, deg, clean in made]
