"""Build a data set from a config: load sources, assign splits, run tasks in a pool, write.

Tasks are independent and CPU-bound (projection, FBP, FFTs), so a process pool scales with cores; the
pool returns results in task order (``imap``) so the array order never depends on timing. BLAS/FFT
threads are pinned to one per worker to avoid oversubscribing the cores.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mediqa.errors import ConfigError
from mediqa.training.datagen.config import DataConfig
from mediqa.training.datagen.sample import Sample
from mediqa.training.datagen.sources import SourceSeries, load_source, source_available
from mediqa.training.datagen.splits import assign_splits, check_disjoint
from mediqa.training.datagen.tasks import Task, plan_tasks, run_task
from mediqa.training.datagen.writer import write_dataset
from mediqa.training.progress import progress as progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    path: Path
    n_samples: int
    seconds: float
    skipped_sources: tuple[str, ...]


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before the pool starts: the loaded sources, their splits, the tasks, the workers."""

    sources: list[SourceSeries]
    skipped: list[str]
    splits: dict[str, str]
    tasks: list[Task]
    workers: int
    load_seconds: float  # spent loading the sources (each worker loads them again)


def load_sources(cfg: DataConfig) -> tuple[list[SourceSeries], list[str]]:
    root = cfg.data_root_path()
    loaded: list[SourceSeries] = []
    skipped: list[str] = []
    for spec in cfg.sources:
        if not source_available(spec, root):
            if spec.optional:
                log.warning("source '%s' absent under %s: skipped (optional)", spec.name, root)
                skipped.append(spec.name)
                continue
            raise ConfigError(f"source '{spec.name}': {root / spec.path} not found",
                              "put ../shared/data next to the repository, set data_root, or mark it optional")
        src = load_source(spec, root)
        log.info("source %-28s %s %-16s %s %d slices", spec.name, src.modality, src.vendor,
                 "x".join(map(str, src.volume.shape[1:])), src.volume.shape[0])
        loaded.append(src)
    return loaded, skipped


def plan_build(cfg: DataConfig, workers: int | None = None) -> BuildPlan:
    """Load the sources, assign the splits and list the tasks (seconds); ``build`` then runs them (minutes)."""
    start = time.perf_counter()
    sources, skipped = load_sources(cfg)
    splits = assign_splits(((s.spec.group_id, s.vendor) for s in sources), cfg.splits)
    tasks = plan_tasks(cfg, sources)
    n_workers = max(1, min(workers or cfg.workers, len(tasks)))
    log.info("%d sources, %d tasks, %d workers; splits %s", len(sources), len(tasks), n_workers, splits)
    return BuildPlan(sources, skipped, splits, tasks, n_workers, time.perf_counter() - start)


def build(cfg: DataConfig, out_dir: Path, workers: int | None = None, progress: bool = True,
          plan: BuildPlan | None = None) -> BuildResult:
    """Build and write the data set (from ``plan`` when one was made already, with its workers); returns
    where it went and how long it took, source loading included."""
    start = time.perf_counter()
    earlier = 0.0 if plan is None else plan.load_seconds  # a plan made before this call
    plan = plan or plan_build(cfg, workers)
    samples = _run(plan.tasks, cfg, plan.workers, progress)
    splits = plan.splits
    path = write_dataset(out_dir, cfg, samples, splits, extra={"skipped_sources": plan.skipped})
    check_disjoint([{**s.meta, "split": splits[s.meta["group"]]} for s in samples])
    seconds = time.perf_counter() - start + earlier
    log.info("built %d samples in %.1f s", len(samples), seconds)
    return BuildResult(path, len(samples), seconds, tuple(plan.skipped))


def _run(tasks: list[Task], cfg: DataConfig, n_workers: int, progress: bool) -> list[Sample]:
    # Longest first keeps both cores busy to the end; results are put back in plan order afterwards.
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i].cost)
    jobs = [(tasks[i], cfg) for i in order]
    results: list[list[Sample]] = [[] for _ in tasks]
    bar = progress_bar(total=len(tasks), desc=f"build {cfg.name}", unit="task", disable=not progress)
    if n_workers == 1:
        for i, job in zip(order, jobs, strict=True):
            results[i] = run_task(job)
            bar.update()
    else:
        ctx = mp.get_context("spawn" if os.name == "nt" else "forkserver")
        with ctx.Pool(n_workers, initializer=_init_worker) as pool:
            for i, out in zip(order, pool.imap(run_task, jobs, chunksize=1), strict=True):
                results[i] = out
                bar.update()
    bar.close()
    return [s for chunk in results for s in chunk]


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    logging.getLogger("mediqa").setLevel(logging.WARNING)
