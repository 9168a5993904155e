"""The local executor: a process pool on this machine, running the same batch functions as the Ray one.

Processes are spawned (no fork of a parent holding threads); each loads the model once, on its first
series. A worker that dies (killed, out of memory, a crash in native code) breaks the pool: the pool is
built again and the series that were in flight are retried; one that was in flight ``MAX_ATTEMPTS`` times
when a worker died is recorded as unscored ("worker died"), so a poison series cannot stall the job.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from mediqa.backfill.scan import HeaderRow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
_WORKER: Any = None  # this process's SeriesScorer (one model per process)


def _read(paths: list[str], config: bytes) -> list[HeaderRow]:
    from mediqa.backfill.keys import config_from_blob
    from mediqa.backfill.scan import read_headers

    return read_headers(paths, config_from_blob(config))


def _score(rows: list[dict[str, Any]], setup: Mapping[str, Any]) -> list[dict[str, Any]]:
    global _WORKER
    if _WORKER is None:
        from mediqa.backfill.worker import SeriesScorer

        _WORKER = SeriesScorer(**setup)
    return _WORKER.score_rows(rows)


class LocalExecutor:
    """``workers`` processes of ``threads`` ONNX Runtime threads each."""

    def __init__(self, config: bytes, workers: int, threads: int, digest: str, run_id: str) -> None:
        self.config, self.workers = config, max(1, workers)
        self.setup = {"config": self.config, "threads": threads, "digest": digest, "run_id": run_id}
        self.description = f"local process pool, {self.workers} worker(s) x {threads} thread(s)"
        self._pool: ProcessPoolExecutor | None = None
        self.restarts = 0

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def map_headers(self, chunks: Sequence[list[str]]) -> Iterator[list[HeaderRow]]:
        yield from self.pool().map(_read, chunks, [self.config] * len(chunks))

    def score(self, tasks: Sequence[dict[str, Any]], dead_row: Any) -> Iterator[list[dict[str, Any]]]:
        """Result rows as series finish (any order). ``dead_row(task, attempts)`` builds the row of a series
        given up after its worker died ``MAX_ATTEMPTS`` times."""
        pending: deque[dict[str, Any]] = deque(tasks)
        attempts: dict[str, int] = {}
        running: dict[Future[list[dict[str, Any]]], dict[str, Any]] = {}
        while pending or running:
            pool = self.pool()
            try:
                while pending and len(running) < 2 * self.workers:  # a short queue: few series lost to a crash
                    running[pool.submit(_score, [pending[0]], self.setup)] = pending[0]
                    pending.popleft()
            except BrokenProcessPool:  # a worker died since the last batch came back: nothing more goes in
                yield from self._recover(running, pending, attempts, dead_row)
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                task = running.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    running[future] = task  # retried with the others below
            if broken:
                yield from self._recover(running, pending, attempts, dead_row)

    def _recover(self, running: dict[Future[list[dict[str, Any]]], dict[str, Any]],
                 pending: deque[dict[str, Any]], attempts: dict[str, int], dead_row: Any
                 ) -> Iterator[list[dict[str, Any]]]:
        """A worker died: every series in flight is retried on a new pool (or given up after MAX_ATTEMPTS)."""
        self.restarts += 1
        log.warning("a backfill worker died: %d series in flight are retried on a new pool", len(running))
        for future, task in list(running.items()):
            if future.done() and not future.exception():
                yield future.result()
                continue
            uid = task["series_uid"]
            attempts[uid] = attempts.get(uid, 0) + 1
            if attempts[uid] >= MAX_ATTEMPTS:
                yield [dead_row(task, attempts[uid])]
            else:
                pending.appendleft(task)
        running.clear()
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
