"""Quality SRs are built and written in a child process, so highdicom never loads into the agent.

Why: importing highdicom costs the agent ~62 MB for the rest of its life (measured: 252 MB resident idle
after a 2,000-file backlog with SRs, 170 MB without), and building one report costs ~0.2 s of Python in
the agent's own process. ``SrBuilder`` keeps one spawned worker while reports are built and stops it
after ``IDLE_S`` without work; the worker logs nothing and dies with the agent (``agent.child``). The
outbox (``sr_outbox``) decides what to build and records the outcome; ``build_report`` runs in the
worker: it reads the patient and study modules from one of the series' files (header only), builds the
SR (``sr.build_quality_sr``) and writes it atomically (``sr.write_sr``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pydicom

from mediqa.agent.child import quiet_child
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import plan_series
from mediqa.errors import MediqaError

log = logging.getLogger(__name__)

IDLE_S = 30.0  # the worker is stopped after this long without a report to build
BUILD_TIMEOUT_S = 120.0  # one report; a worker stuck longer is stopped and the report failed


class NoReport(Exception):
    """Nothing to report on (said in the outbox row): no readable instance, or none left on disk."""


def build_report(result: Mapping[str, Any], records: Sequence[InstanceRecord], replaces: str | None,
                 sr_dir: str) -> str:
    """In the worker: build ``result``'s SR from ``records`` and write it under ``sr_dir``; its path."""
    from mediqa.agent.report.sr import build_quality_sr, write_sr  # highdicom: in the worker only

    unique = list({r.sop_instance_uid: r for r in records}.values())
    if not unique:
        raise NoReport("no readable instance to report on")
    header = None
    for record in unique:  # the patient and study modules of the series, header-only
        try:
            ds = pydicom.dcmread(record.path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - gone, unreadable: try the next file of the series
            continue
        if str(ds.get("SeriesInstanceUID", "")) == record.series_uid and "StudyInstanceUID" in ds:
            header = ds
            break
    if header is None:
        raise NoReport("none of the series' files can be read any more")
    report = build_quality_sr(result, header, worst_sop_uid(result, unique),
                          [(r.sop_class_uid, r.sop_instance_uid) for r in unique], replaces=replaces)
    return str(write_sr(report, sr_dir))


def worst_sop_uid(result: Mapping[str, Any], records: Sequence[InstanceRecord]) -> str | None:
    """The SOP Instance UID of the result's worst slice: its index is into ``plan_series(records).slices``."""
    worst = result.get("worst_slice")
    index = worst.get("index") if isinstance(worst, Mapping) else None
    if not isinstance(index, int) or isinstance(index, bool):
        return None
    try:
        layout = plan_series(records)
        path = layout.slices[index].path
    except (MediqaError, IndexError):
        return None
    return next((r.sop_instance_uid for r in records if r.path == path), None)


class SrBuilder:
    """One worker process that builds reports (started on first use, stopped when idle or closed)."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self._executor: ProcessPoolExecutor | None = None
        self._used_at = 0.0
        self._lock = threading.Lock()

    def build(self, result: Mapping[str, Any], records: Sequence[InstanceRecord], replaces: str | None,
              sr_dir: str | os.PathLike[str]) -> Path:
        """Build and write one report in the worker; raises what ``build_report`` raised (``NoReport``,
        ``OSError`` of the state dir's disk, ...), or ``BrokenProcessPool`` when the worker died."""
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=quiet_child, initargs=(os.getpid(),))
            executor = self._executor
        try:
            future = executor.submit(build_report, dict(result), list(records), replaces, os.fspath(sr_dir))
            return Path(future.result(timeout=BUILD_TIMEOUT_S))
        except (BrokenProcessPool, TimeoutError):
            self.close(kill=True)  # a dead or stuck worker: a new one next time
            raise
        finally:
            self._used_at = time.monotonic()

    def close_if_idle(self) -> None:
        if self._executor is not None and time.monotonic() - self._used_at >= self.idle_s:
            self.close()

    def close(self, kill: bool = False) -> None:
        """Stop the worker (``kill``: at once, for one that is stuck; else after the report in progress)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        if kill:
            for process in list(getattr(executor, "_processes", {}).values()):  # no public way to stop a worker
                process.kill()
        executor.shutdown(wait=not kill, cancel_futures=True)
