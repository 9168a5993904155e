"""The scoring worker: the model is loaded once per worker (a Ray actor or a pool process), then each
series goes through ``agent.pipeline.analyse_series``, the agent's one wiring of the chain.

A series that cannot be measured is an ``unscored`` row with its reason (as in the agent); an unexpected
exception in one series is an ``unscored`` row too ("internal error"), so one bad series never fails the job.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mediqa.agent.config import AgentConfig
from mediqa.backfill.keys import config_from_blob
from mediqa.backfill.scan import SeriesTask
from mediqa.backfill.store import result_row
from mediqa.errors import MediqaError

log = logging.getLogger(__name__)


def worker_config(blob: bytes, threads: int) -> AgentConfig:
    """The driver's loaded config (``config_blob``), with this worker's thread count."""
    config = config_from_blob(blob)
    return dataclasses.replace(config, scoring=dataclasses.replace(config.scoring, threads=max(1, threads)))


class SeriesScorer:
    """Callable over a batch of task rows -> result rows. Ray Data runs it as an actor class
    (``map_batches(SeriesScorer, ...)``); the local pool keeps one per process."""

    def __init__(self, config: bytes, threads: int, digest: str, run_id: str) -> None:
        from mediqa.agent.scoring.factory import make_scorer

        self.config = worker_config(config, threads)
        self.digest, self.run_id = digest, run_id
        self.scorer = make_scorer(self.config)

    def score_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [self.score_task(SeriesTask.from_row(row)) for row in rows]

    def score_task(self, task: SeriesTask) -> dict[str, Any]:
        from mediqa.agent.pipeline import analyse_series, unscored_result
        from mediqa.agent.scoring.base import provenance_fields
        from mediqa.backfill.scan import station_name

        if task.records and not task.station:  # read here, in parallel, not one file per series on the driver
            task = dataclasses.replace(task, station=station_name(task.records[0].path))
        started = time.perf_counter()
        try:
            analysis = analyse_series(list(task.records), self.scorer, self.config)
            result = dataclasses.replace(analysis.result, **provenance_fields(self.scorer))
        except MediqaError as exc:
            result = unscored_result(task.records, [str(exc)], scorer=self.scorer,
                                     processing_ms=(time.perf_counter() - started) * 1000.0)
        except Exception as exc:  # noqa: BLE001 - one series' bug is that series' recorded reason, not a failed job
            log.warning("series %s: internal error %s", task.records[0].series_key if task.records else "?",
                        type(exc).__name__)
            result = unscored_result(task.records, [f"internal error ({type(exc).__name__})"], scorer=self.scorer,
                                     series_uid=task.series_uid)
        return result_row(result, task, self.digest, self.run_id)

    def __call__(self, batch: Any) -> Any:
        """Ray Data's entry: a pyarrow batch in, a pyarrow batch (the results schema) out."""
        from mediqa.backfill.store import to_table

        return to_table(self.score_rows(batch.to_pylist()))

    def close(self) -> None:
        self.scorer.close()
