"""The Ray executor: Ray Data over a local instance (``--ray local``) or a running cluster (``auto``, ADDRESS).

The header scan is a task-pool ``map_batches`` over chunks of paths; scoring is an actor pool
(``map_batches(SeriesScorer, compute=ActorPoolStrategy(size=n))``) whose actors load the model once. The
functions are the local executor's (``scan.read_headers``, ``worker.SeriesScorer``). Ray Data restarts a
dead actor and retries its batch (its defaults for actor pools: ``max_restarts=-1``, ``max_task_retries=-1``;
Ray 2.60 deprecates setting them through ``ray_remote_args``), and the driver keeps each series once however
often a batch ran. Python errors never reach Ray (a series' error is its recorded reason); only a crash in
native code kills an actor, and such a poison series would be retried without end: see docs/backfill.md.
A local instance is started on the loopback address only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray then
gives the node 127.0.0.1) and stopped with the run; a joined cluster is left running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from mediqa.backfill.scan import HeaderRow, read_headers

log = logging.getLogger(__name__)


def _read_chunk(batch: Any, config: bytes) -> Any:
    """A task of the header scan: a pyarrow batch of path chunks (JSON lists) -> one row per file."""
    import json

    import pyarrow as pa

    from mediqa.backfill.keys import config_from_blob

    paths = [p for chunk in batch.column("paths").to_pylist() for p in json.loads(chunk)]
    return pa.Table.from_pylist(read_headers(paths, config_from_blob(config)))


class RayExecutor:
    """``workers`` scoring actors of ``threads`` CPUs (and ``gpus`` GPUs) each."""

    def __init__(self, address: str, config: bytes, workers: int, threads: int, gpus: float,
                 digest: str, run_id: str) -> None:
        self.local = address == "local"
        if self.local:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # node IP 127.0.0.1
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray
        import ray.data

        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if self.local:
                ray.init(num_cpus=max(1, workers) * max(1, threads), **kwargs)
            else:
                ray.init(address=address, **kwargs)
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-dataset notices; errors still show
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours is the one progress bar
        context.print_on_execution_start = False
        self.config, self.workers, self.threads, self.gpus = config, max(1, workers), max(1, threads), gpus
        self.setup = {"config": self.config, "threads": self.threads, "digest": digest, "run_id": run_id}
        where = "a local Ray instance" if self.local else f"the Ray cluster at {address}"
        self.description = f"{where}, {self.workers} actor(s) x {self.threads} CPU(s)" + (
            f" x {gpus:g} GPU" if gpus else "")
        self.restarts = 0

    def map_headers(self, chunks: Sequence[list[str]]) -> Iterator[list[HeaderRow]]:
        import json

        import ray.data

        items = [{"paths": json.dumps(chunk)} for chunk in chunks]
        if not items:
            return
        # Any: Ray's stubs type batches as a union of formats; ours are pyarrow (batch_format below)
        source: Any = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * self.workers))
        ds: Any = source.map_batches(_read_chunk, fn_kwargs={"config": self.config}, batch_size=1,
                                     batch_format="pyarrow")
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield table.to_pylist()

    def score(self, tasks: Sequence[dict[str, Any]], dead_row: Any) -> Iterator[list[dict[str, Any]]]:
        import ray.data

        from mediqa.backfill.worker import SeriesScorer

        if not tasks:
            return
        source: Any = ray.data.from_items(list(tasks), override_num_blocks=len(tasks))  # a block per series: retries
        ds: Any = source.map_batches(SeriesScorer, fn_constructor_kwargs=self.setup, batch_size=1,
                                     batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=self.workers),
                                     num_cpus=self.threads, num_gpus=self.gpus or None)
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield table.to_pylist()

    def close(self) -> None:
        if self.local and self._ray.is_initialized():
            self._ray.shutdown()
