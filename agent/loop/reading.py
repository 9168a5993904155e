"""Reading one stable file: its header and content digest, or why not; in the loop or in worker processes.

``read_file`` is what indexing does per file (never raises for the file's sake). Big batches (a start-up
backlog, a burst: ``intake.POOL_MIN_READY`` ready files or more) start ``ReadPool``: worker processes
that read headers ahead of the loop while it records, scores and computes saliency (measured on this
machine, 2 cores, 4 CT + 4 MR series of 142 files, synchronous hand-over: 340 files/s in the loop, 515
with two workers; the asynchronous read-ahead: see docs/performance.md). Small arrivals are read in the
loop (no hand-over latency). The workers are started when first needed (``spawn``: the loop has threads)
and stopped after ``POOL_IDLE_S`` unused, which gives their memory back; a worker that dies (a decoder's
crash) makes its files read in the loop, and the pool is started again later.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import time
import traceback
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from mediqa.agent.child import quiet_child
from mediqa.agent.config import IngestConfig
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord, record_to_json
from mediqa.agent.series.tracker import FileOutcome
from mediqa.errors import DicomSkip

log = logging.getLogger(__name__)

POOL_MIN_READY = 256  # ready files that make a pass read its batch in worker processes
POOL_WORKERS = 2
POOL_IDLE_S = 30.0  # workers unused this long are stopped
CHUNK = 16  # files per hand-over to a worker

Reader = Callable[..., InstanceRecord]
Problem = tuple[str, BaseException] | None  # (while doing what, the exception) for an internal error
Job = tuple[str, int, int]  # (path, size, mtime_ns) of a stable file
Ready = tuple[str, os.stat_result]  # a stable file and the loop's stat of it
Read = tuple[FileOutcome, tuple[str, str, str] | None]  # a worker's outcome, and (what, type, traceback) of an error


def _worker_start(parent: int) -> None:
    """A reading worker: quiet and gone with the agent (``quiet_child``); what its imports made (pydicom's
    dictionaries: ~75,000 objects) kept out of its full garbage collections, which walked them all several
    times a second while it read a burst (see ``memory.freeze_startup_objects``)."""
    quiet_child(parent)
    gc.freeze()


def read_file(path: str, size: int, mtime_ns: int, ingest: IngestConfig, reader: Reader = read_header
              ) -> tuple[FileOutcome, Problem]:
    """Header and content digest of a stable file (seen with ``size``/``mtime_ns``), or why not.

    ``status`` "again": it changed while it was read. An exception is a final skip ``internal: <type>``,
    returned with what was being done when it happened (the caller logs it).
    """
    out = FileOutcome(path, size, mtime_ns)
    try:
        record = reader(path, skip_derived=ingest.skip_derived, skip_localizers=ingest.skip_localizers,
                        limits=ingest.limits)
    except DicomSkip as skip:
        out.reason, out.detail, out.retry, out.series_uid = skip.reason, skip.detail, skip.retry, skip.series_uid
        return out, None
    except Exception as exc:  # noqa: BLE001 - a poison file is a recorded skip, never the loop's end
        out.reason = f"internal: {type(exc).__name__}"
        return out, ("reading", exc)
    try:
        crc, length = file_crc32(path)
        after = os.stat(path)
        if length != size or (after.st_size, after.st_mtime_ns) != (size, mtime_ns):
            out.status, out.size, out.mtime_ns = "again", after.st_size, after.st_mtime_ns
            return out, None
        out.record, out.record_json, out.crc = record, record_to_json(record), crc
    except OSError as exc:
        out.reason, out.detail, out.retry = "unreadable", exc.strerror or type(exc).__name__, True
    except Exception as exc:  # noqa: BLE001 - e.g. a header value that cannot be stored
        out.reason = f"internal: {type(exc).__name__}"
        return out, ("recording", exc)
    return out, None


def file_crc32(path: str, chunk: int = 1 << 20) -> tuple[int, int]:
    """zlib.crc32 of the file's bytes and how many were read (one sequential read; cheap, not a hash)."""
    crc, n = 0, 0
    with open(path, "rb") as fh:  # read-only, like everything the agent opens in the export folder
        while block := fh.read(chunk):
            crc = zlib.crc32(block, crc)
            n += len(block)
    return crc, n


def _read_in_worker(jobs: list[Job], ingest: IngestConfig) -> list[Read]:
    """In a worker: ``read_file`` for each job; an internal error comes back as (what, type, traceback)."""
    out = []
    for path, size, mtime_ns in jobs:
        outcome, problem = read_file(path, size, mtime_ns, ingest)
        sent = None
        if problem is not None:
            what, exc = problem
            sent = (what, type(exc).__name__, "".join(traceback.format_exception(exc)).rstrip())
        out.append((outcome, sent))
    return out


def _started() -> bool:
    return True


class ReadPool:
    """Worker processes that read files ahead of the loop (started on first use, stopped when idle).

    Reads are asynchronous: ``submit`` hands chunks of files to the workers and returns at once, the
    loop goes on recording, scoring and computing saliency, and ``harvest`` collects the chunks that are
    done, without waiting. So on 2 cores the header parsing of a backlog or burst runs beside the loop's
    own work instead of in turns with it. Starting takes a moment (each worker imports the reader):
    ``ready()`` starts the workers without waiting and says whether they are up; until then the loop
    reads by itself. A chunk whose worker died (a decoder's crash) comes back from ``harvest`` as jobs
    to read in the loop; the pool is then closed and started again later.
    """

    def __init__(self, workers: int = POOL_WORKERS) -> None:
        self.workers = max(1, min(workers, os.cpu_count() or 1))
        self._executor: ProcessPoolExecutor | None = None
        self._starting: list[Future[bool]] = []
        self._flying: dict[Future[list[Read]], list[Ready]] = {}
        self.taken: set[str] = set()  # paths in flight
        self._used_at = 0.0

    def ready(self, start: bool = True) -> bool:
        """True once every worker is up; with ``start``, starts them (without waiting) if they are not running."""
        if self._executor is None:
            if not start:
                return False
            try:
                self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_worker_start, initargs=(os.getpid(),))
                self._starting = [self._executor.submit(_started) for _ in range(self.workers)]
            except (OSError, RuntimeError) as exc:  # no processes here (a sandbox): the loop reads by itself
                log.warning("cannot start header reading workers (%s)", type(exc).__name__)
                self._executor = None
                return False
            self._used_at = time.monotonic()
        return all(f.done() for f in self._starting)

    def in_flight(self) -> int:
        """Files handed to the workers and not harvested yet."""
        return len(self.taken)

    def submit(self, ready: list[Ready], ingest: IngestConfig) -> int:
        """Hand ``ready`` files to the workers in chunks of ``CHUNK``; how many were handed (the rest stay
        pending and come up again in the next pass)."""
        if self._executor is None:
            return 0
        handed = 0
        try:
            for i in range(0, len(ready), CHUNK):
                chunk = ready[i:i + CHUNK]
                jobs = [(path, st.st_size, st.st_mtime_ns) for path, st in chunk]
                self._flying[self._executor.submit(_read_in_worker, jobs, ingest)] = chunk
                self.taken.update(path for path, _ in chunk)
                handed += len(chunk)
        except (BrokenProcessPool, OSError, RuntimeError) as exc:  # a worker died, or could not be started
            log.warning("header reading in worker processes failed (%s): reading in the agent's process",
                        type(exc).__name__)
            self.close(keep_jobs=True)  # what was handed fails, and harvest() gives it back to read here
        self._used_at = time.monotonic()
        return handed

    def harvest(self, wait_s: float = 0.0) -> tuple[list[tuple[Ready, Read]], list[Ready]]:
        """The reads done so far (the file, and its outcome), and the files to read in the loop instead (a
        dead worker's); waits up to ``wait_s`` for a chunk to finish when none has."""
        if not self._flying:
            return [], []
        if wait_s > 0 and not any(f.done() for f in self._flying):
            wait(list(self._flying), timeout=wait_s, return_when=FIRST_COMPLETED)
        done: list[tuple[Ready, Read]] = []
        lost: list[Ready] = []
        broken = False
        for future in [f for f in self._flying if f.done()]:
            chunk = self._flying.pop(future)
            self.taken.difference_update(path for path, _ in chunk)
            try:
                done.extend(zip(chunk, future.result(), strict=True))
            except (BrokenProcessPool, OSError, RuntimeError, CancelledError) as exc:
                if not broken:
                    log.warning("header reading in worker processes failed (%s): reading in the agent's process",
                                type(exc).__name__)
                broken = True
                lost.extend(chunk)
        if broken:  # every chunk still in flight went down with the pool
            for chunk in self._flying.values():
                lost.extend(chunk)
            self._flying.clear()
            self.taken.clear()
            self.close()
        if done or lost:
            self._used_at = time.monotonic()
        return done, lost

    def close_if_idle(self) -> bool:
        """Stop the workers when unused for ``POOL_IDLE_S``; True when this call stopped them."""
        if self._executor is not None and not self._flying and time.monotonic() - self._used_at >= POOL_IDLE_S:
            self.close()
            return True
        return False

    def close(self, keep_jobs: bool = False) -> None:
        """Stop the workers (without waiting). Files in flight are dropped unless ``keep_jobs``: their
        futures then fail and ``harvest`` returns them as jobs to read in the loop."""
        executor, self._executor = self._executor, None
        self._starting = []
        if not keep_jobs:
            self._flying.clear()
            self.taken.clear()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
