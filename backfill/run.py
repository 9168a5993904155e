"""One backfill run: scan, group, skip what is done, score the rest on an executor, write parts, summarise.

The driver alone writes: it keeps each series once (a batch Ray retried after a dead actor may arrive
twice) and flushes a Parquet part every ``FLUSH_ROWS`` rows or ``FLUSH_S`` seconds, so a killed run loses at
most the series of the part it had not written, and the next run scores them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mediqa.agent.config import AgentConfig
from mediqa.backfill.keys import config_digest, model_sha256
from mediqa.backfill.scan import Discovery, HeaderRow, SeriesTask, chunks, group_series, list_files
from mediqa.backfill.store import ResultsDir, result_row

log = logging.getLogger(__name__)

FLUSH_ROWS = 16
FLUSH_S = 30.0
HEADER_CHUNK = 256


class Executor(Protocol):
    description: str
    restarts: int

    def map_headers(self, chunks: Sequence[list[str]]) -> Iterator[list[HeaderRow]]: ...

    def score(self, tasks: Sequence[dict[str, Any]], dead_row: Any) -> Iterator[list[dict[str, Any]]]: ...

    def close(self) -> None: ...


@dataclass
class Report:
    files: int = 0
    files_skipped: int = 0
    series: int = 0
    already_done: int = 0
    scored: int = 0
    duplicates_dropped: int = 0
    scan_s: float = 0.0
    score_s: float = 0.0
    decisions: dict[str, int] = field(default_factory=dict)
    discovery: Discovery | None = None

    @property
    def series_per_s(self) -> float:
        return self.scored / self.score_s if self.score_s > 0 else 0.0


def run_backfill(tree: Path, results: ResultsDir, config: AgentConfig, executor: Executor, *,
                 progress: Callable[[int], Any] | None = None, on_total: Callable[[int], Any] | None = None,
                 flush_rows: int = FLUSH_ROWS) -> Report:
    """Score every series under ``tree`` not yet in ``results`` with this model and config."""
    report = Report()
    started = time.perf_counter()
    files = list_files(tree, config)
    order = {path: i for i, path in enumerate(files)}
    rows: list[HeaderRow] = []
    for batch in executor.map_headers(chunks(files, HEADER_CHUNK)):
        rows.extend(batch)
    rows.sort(key=lambda r: order[r["path"]])  # the walk order, whatever order the chunks came back in
    found = group_series(rows)
    del rows  # the grouped JSON is all the driver keeps
    order.clear()
    report.discovery, report.files, report.files_skipped = found, found.files, len(found.skipped)
    results.write_skips(found.skipped)
    digest, sha = config_digest(config), model_sha256(config)
    done = results.done_keys()
    tasks = [found.task_row(uid) for uid in found.series if (uid, sha, digest) not in done]
    report.series, report.already_done = len(found.series), len(found.series) - len(tasks)
    report.scan_s = time.perf_counter() - started
    if on_total:
        on_total(len(tasks))
    started = time.perf_counter()
    seen: set[str] = set()
    buffer: list[dict[str, Any]] = []
    flushed_at = time.monotonic()
    for batch in executor.score(tasks, lambda task, n: _dead_row(task, n, digest, results.run_id)):
        for row in batch:
            if row["series_uid"] in seen:
                report.duplicates_dropped += 1
                continue
            seen.add(row["series_uid"])
            buffer.append(row)
            report.decisions[row["decision"]] = report.decisions.get(row["decision"], 0) + 1
            if progress:
                progress(1)
        if len(buffer) >= max(1, flush_rows) or (buffer and time.monotonic() - flushed_at > FLUSH_S):
            results.write(buffer)
            report.scored += len(buffer)
            buffer, flushed_at = [], time.monotonic()
    results.write(buffer)
    report.scored += len(buffer)
    report.score_s = time.perf_counter() - started
    return report


def _dead_row(task: Mapping[str, Any], attempts: int, digest: str, run_id: str) -> dict[str, Any]:
    from mediqa.agent.pipeline import unscored_result

    series = SeriesTask.from_row(task)
    result = unscored_result(series.records, [f"a worker died {attempts} times while scoring this series"],
                             series_uid=series.series_uid)
    return result_row(result, series, digest, run_id)
