"""Latency per series for each backend that can run here, side by side.

One "series" is one inference at the engine's typical batch (slices x crops). Inputs are golden
cases when given (real data), else deterministic inputs shaped from the model's specs: latency does
not depend on pixel values for these models. Each backend gets warm-up runs first so lazy
initialisation (CUDA modules, ORT arenas) is not counted.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from mediqa.engines.backends.base import Backend
from mediqa.engines.model_io import ModelInfo
from mediqa.errors import BackendUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchRow:
    backend: str
    batch: int
    median_ms: float | None
    p90_ms: float | None
    runs: int
    note: str = ""

    def line(self) -> str:
        if self.median_ms is None:
            return f"  {self.backend:<48} {'-':>10} {'-':>10}  {self.note}"
        return f"  {self.backend:<48} {self.median_ms:>8.2f} ms {self.p90_ms:>7.2f} ms  {self.note}"


def synthetic_feed(info: ModelInfo, batch: int, item_shapes: Mapping[str, tuple[int, ...]] | None = None,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs shaped like the model's: floats in [-1, 1], integers 0 (the 'unknown' prompt tokens)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in info.inputs:
        given = (item_shapes or {}).get(spec.name)
        rest = given or tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape[1:])
        shape = (batch, *rest)
        if np.issubdtype(spec.dtype, np.floating):
            feed[spec.name] = rng.uniform(-1, 1, shape).astype(spec.dtype)
        else:
            feed[spec.name] = np.zeros(shape, spec.dtype)
    return feed


def bench_backend(make: Callable[[], Backend], label: str, feed: Mapping[str, np.ndarray], runs: int = 20,
                  warmup: int = 3) -> BenchRow:
    batch = int(next(iter(feed.values())).shape[0])
    try:
        backend = make().load()
    except BackendUnavailable as exc:
        return BenchRow(label, batch, None, None, 0, f"skipped: {exc}")
    try:
        for _ in range(warmup):
            backend.infer(feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            backend.infer(feed)
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        backend.close()
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    row = BenchRow(label, batch, statistics.median(times), p90, runs, backend.describe())
    logger.info("bench %s: median %.2f ms, p90 %.2f ms (batch %d)", label, row.median_ms, p90, batch)
    return row
