"""Intake: file events and walks -> pending files -> indexed instances, in bounded slices per pass.

Bounded work per pass, so a series' latency does not depend on other series' backlog: a pass offers at
most a slice of a walk in progress (``WALK_MIN_FILES``, then ``WALK_SLICE_S``) and indexes at most
``INDEX_MAX_FILES`` ready files (at least ``INDEX_MIN_FILES``, then until ``INDEX_SLICE_S``); the loop then
scores what is due and comes back for more. Files are indexed in the order they were found: a walk lists
the export folder by folder, so at start-up the backlog's series complete one after the other instead of
all waiting for the last file. What is not indexed yet is pending, and pending files hold their folders'
series (``completion``).

Events are coalesced: a path seen many times in one pass is offered once. Each file's header and content
digest (``zlib.crc32`` of its bytes, read once) are recorded in one transaction per batch; a database
error leaves the batch pending, a file that changed while it was read waits a new window.

When each file was written (its ``st_mtime``/``st_ctime``, on the agent's clock) is remembered per series
for this run (``_arrived``): the quiet period of a series counts from its newest file, not from when the
loop got round to indexing it, so the indexing lag of a burst does not add to every series' latency.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import time
from collections.abc import Iterator, Mapping

from mediqa.agent.config import HeaderLimits
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.loop.base import LoopBase
from mediqa.agent.loop.reading import POOL_MIN_READY, Read, read_file
from mediqa.agent.report.privacy import clean_text
from mediqa.agent.series.tracker import FileOutcome, FileRow
from mediqa.agent.watch.walk import walk_files

log = logging.getLogger(__name__)

WALK_MIN_FILES = 5000  # a pass offers at least this many files of a walk in progress ...
WALK_SLICE_S = 0.2  # ... and then stops after this long (the next pass goes on)
INDEX_MIN_FILES = 128  # a pass indexes at least this many ready files (when there are) ...
INDEX_MAX_FILES = 512  # ... at most this many ...
INDEX_SLICE_S = 0.5  # ... and stops after this long once it has the minimum
POOL_AHEAD = 2048  # files in flight in the reading workers at most (read ahead while the loop scores: 512 left
# them idle half of a backlog's passes, each of which may score for a second or more)
POOL_WARM_MIN = 32  # once the workers are up, batches this big go to them (smaller ones: no hand-over latency)
POOL_WAIT_S = 0.05  # how long a pass with nothing else to record waits for the workers' next chunk
PING_EVERY_S = 2.0  # ``on_pass`` is called at least this often during a long walk (the agent's clock)
wall_clock = time.time  # what file times are compared with (the agent's own clock may be injected)


class IntakeJob(LoopBase):
    # --- events and walks ----------------------------------------------------------------------------
    def offer(self, path: str, closed: bool = False, rows: Mapping[str, FileRow] | None = None) -> None:
        """A path may hold a new or changed file: remember it until it is stable, then parse it. ``rows``:
        its folder's rows, read beforehand by a walk (``tracker.folder_rows``)."""
        try:
            st = os.stat(path)
        except OSError:
            return  # gone again (a temp file renamed away)
        if not stat.S_ISREG(st.st_mode) or self.tracker.file_known(path, st.st_size, st.st_mtime_ns, rows):
            return
        self._observe(path, st, closed)

    def _observe(self, path: str, st: os.stat_result, closed: bool = False) -> None:
        self.settler.observe(path, st.st_size, st.st_mtime_ns, closed)
        self._pending.setdefault(os.path.dirname(path), set()).add(path)
        if path not in self._first_seen:
            if len(self._first_seen) >= self._first_seen_max:
                del self._first_seen[next(iter(self._first_seen))]
            self._first_seen[path] = self.clock()

    def _done(self, path: str, indexed: bool) -> None:
        self.settler.done(path)
        folder = self._pending.get(os.path.dirname(path))
        if folder is not None:
            folder.discard(path)
        if indexed:
            self._first_seen.pop(path, None)  # a skipped one keeps it: a file that keeps changing stops holding

    def reconcile(self) -> int:
        """Walk the whole export folder now; enqueue files the events missed. Returns how many were new."""
        before = len(self.settler)
        self._begin_walk()  # a walk in progress starts again from the top
        self._continue_walk(0, float("inf"))
        return len(self.settler) - before

    def _begin_walk(self) -> None:
        self._unlistable = set()
        self._walk = self._walk_from(self.folder)

    def _walk_slice(self) -> None:
        """One pass's share of the periodic walk (started when due): the rest is walked in the next passes."""
        if self._walk is None and self.clock() - self._last_reconcile >= self.config.watch.reconcile_interval_s:
            self._begin_walk()
        if self._walk is not None:
            self._continue_walk(WALK_MIN_FILES, WALK_SLICE_S)

    def _continue_walk(self, min_files: int, slice_s: float) -> None:
        walk = self._walk
        if walk is None:
            return
        started = time.perf_counter()
        last_ping = self.clock()
        finished = True
        folder, rows = "", None  # the walk lists a folder's files together: their rows are read in one query
        with self._guard("rescanning the export folder", "intake"):
            for n, path in enumerate(walk, 1):
                if os.path.dirname(path) != folder or rows is None:
                    folder = os.path.dirname(path)
                    rows = self.tracker.folder_rows(folder)
                self.offer(path, rows=rows)
                if n % 64 == 0:
                    if n >= min_files and time.perf_counter() - started >= slice_s:
                        finished = False
                        break
                    if self.clock() - last_ping >= PING_EVERY_S:
                        last_ping = self.clock()
                        self._ping()
        if not finished or self._walk is not walk:
            return  # more to walk next pass; or the database was rebuilt meanwhile (a new walk starts)
        self._walk = None  # walked to the end (or given up on an error: the next walk starts again)
        self._last_reconcile = self.clock()
        self._scan_done = True
        if self._unlistable:
            self._problem("walk", f"{len(self._unlistable)} folder(s) of the export cannot be listed (e.g. "
                                  f"{min(self._unlistable)}): their files are not seen")
        else:
            self._resolved("walk")

    def _walk_from(self, root: str | os.PathLike[str]) -> Iterator[str]:
        """The one walk, with the export root's depth and link rules (a rescanned subfolder too)."""
        watch = self.config.watch
        return walk_files(root, max_depth=watch.max_depth, follow_links=watch.follow_links,
                          on_problem=self._walk_problem, within=self.folder)

    def _walk_problem(self, kind: str, rel_path: str) -> None:
        """A folder the walk could not list (the walk logs it once, by label): kept for ``health``."""
        if kind == "unreadable" and len(self._unlistable) < 1000:
            self._unlistable.add(self.labels.label(os.path.join(self.folder, rel_path)))

    def _drain(self, timeout: float) -> None:
        """Take the events waiting (waiting up to ``timeout`` for the first); each path is offered once."""
        try:
            event = self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()
        except queue.Empty:
            return
        files: dict[str, bool] = {}  # path -> the writer closed it (coalesced: offered once per pass)
        folders: list[str] = []
        while True:
            if event.rescan:
                folders.append(event.path)
            else:
                files[event.path] = files.get(event.path, False) or event.closed
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
        self.stats.file_event(self.clock())
        for folder in dict.fromkeys(folders):
            for path in self._walk_from(folder):
                self.offer(path)
        for path, closed in files.items():
            self.offer(path, closed)

    # --- indexing ----------------------------------------------------------------------------------------
    def _index_ready(self) -> None:
        """Record what the reading workers finished, hand them more, read small arrivals here; one
        transaction per pass.

        Big batches (``POOL_MIN_READY`` ready files: a backlog, a burst) start the workers; once they are
        up, every batch of ``POOL_WARM_MIN`` or more goes to them, at most ``POOL_AHEAD`` files in flight,
        and the loop goes on with scoring meanwhile. A database error leaves the batch pending (read
        again once writes work); a file that changed while it was read waits a new window.
        """
        done, lost = self._pool.harvest()
        outcomes = self._from_workers(done)
        ready: list[tuple[str, os.stat_result]] = list(lost)  # a dead worker's files: read here, now
        # Workers up: enough to keep them busy until the next pass (which may score for a second or more).
        limit = max(INDEX_MAX_FILES, POOL_AHEAD - self._pool.in_flight()) if self._pool.ready(start=False) \
            else INDEX_MAX_FILES
        for path, st in self.settler.ready(self._pool.taken):  # files inside their window are not even stat'ed
            if len(ready) >= limit:
                break
            ready.append((path, st))
        if ready and not lost and len(ready) >= POOL_WARM_MIN and self._pool.ready(start=len(ready) >= POOL_MIN_READY):
            self._pool.submit(ready[:max(0, POOL_AHEAD - self._pool.in_flight())], self.config.ingest)
            self._scorer_hook("prepare_spare")  # series scored while the workers read need it: made off their time
        elif ready:
            outcomes.extend(self._read_here(ready, everything=bool(lost)))
        elif self.config.ingest.read_workers_warm:
            self._pool.ready()  # kept up: the next export's first batch needs no start-up
        elif not self._pool.in_flight() and self._pool.close_if_idle():
            self._scorer_hook("release_spare")  # it lives as long as the workers
        if not outcomes and self._pool.in_flight():  # nothing else to record: give the workers a moment
            done, lost = self._pool.harvest(POOL_WAIT_S)
            outcomes = self._from_workers(done)
            outcomes.extend(self._read_here(lost, everything=True))
        batch: list[FileOutcome] = []
        written: dict[str, float] = {}  # path -> when it was last written, on the agent's clock
        now = self.clock()
        for out, st in outcomes:
            if out.status == "again":
                self.settler.again(out.path, out.size, out.mtime_ns)
            else:
                batch.append(out)
                written[out.path] = _written_at(st, now)
        if batch:
            self._record(batch, written)

    def _read_here(self, ready: list[tuple[str, os.stat_result]], everything: bool = False
                   ) -> list[tuple[FileOutcome, os.stat_result]]:
        """Read in the loop: at least ``INDEX_MIN_FILES``, then until ``INDEX_SLICE_S`` has passed (or all)."""
        out = []
        started = time.perf_counter()
        for n, (path, st) in enumerate(ready, 1):
            out.append((self._read(path, st), st))
            if not everything and n >= INDEX_MIN_FILES and time.perf_counter() - started >= INDEX_SLICE_S:
                break
        return out

    def _from_workers(self, done: list[tuple[tuple[str, os.stat_result], Read]]
                      ) -> list[tuple[FileOutcome, os.stat_result]]:
        """The workers' outcomes, each with the loop's stat of its file; their internal errors are logged
        here (the workers log nothing)."""
        out = []
        for (path, st), (outcome, problem) in done:
            if problem is not None:
                what, name, text = problem
                self._internal_error_text(f"{what} {self.labels.label(path)}", name, text)
            out.append((outcome, st))
        return out

    def _record(self, batch: list[FileOutcome], written: dict[str, float]) -> None:
        self.tracker.apply(batch, self.config.ingest.max_retries)
        applied_at = self.clock()
        fresh: list[InstanceRecord] = []
        for out in batch:
            if out.status == "retry":
                self.settler.again(out.path, out.size, out.mtime_ns)
                log.debug("not ready yet (%s, try %d): %s", out.reason, out.attempts, self.labels.label(out.path))
                continue
            self._done(out.path, indexed=out.status != "skipped")
            if out.status == "skipped":
                if len(self.skipped) >= self._skipped_kept:  # the latest skips, for a look (bounded memory)
                    del self.skipped[next(iter(self.skipped))]
                self.skipped[out.path] = out.reason
                self.stats.skipped(out.reason)
                if out.series_uid:
                    self._arrival(out.series_uid, written[out.path], applied_at)
                log.info("skipped %s: %s", self.labels.label(out.path),
                         clean_text(f"{out.reason}: {out.detail}" if out.detail else out.reason, 160))
                continue
            self.stats.indexed()
            if out.status in ("new", "changed") and out.record is not None:
                fresh.append(out.record)
                self._arrival(out.record.series_uid, written[out.path], applied_at)
        self._indexed_since_release += len(batch)
        if fresh and self.config.scoring.selection == "salient":
            self._queue_saliency(fresh)

    def _read(self, path: str, st: os.stat_result) -> FileOutcome:
        """Header and content digest of a stable file, or why not (never raises for the file's sake)."""
        out, problem = read_file(path, st.st_size, st.st_mtime_ns, self.config.ingest, self._read_header)
        if problem is not None:
            what, exc = problem
            self._internal_error(f"{what} {self.labels.label(path)}", exc)
        return out

    def _read_header(self, path: str, *, skip_derived: bool, skip_localizers: bool,
                     limits: HeaderLimits) -> InstanceRecord:
        """The header reader (``Agent`` points this at ``mediqa.agent.service.read_header``)."""
        return read_header(path, skip_derived=skip_derived, skip_localizers=skip_localizers, limits=limits)


def _written_at(st: os.stat_result, now: float) -> float:
    """When the file was last written or moved here (its mtime or ctime, the later), on the agent's clock.

    The agent's clock may be injected (tests): the file's age in wall-clock seconds is taken from ``now``.
    A copy that keeps old mtimes (``cp -p``) still has a fresh ctime, so the age is never overstated.
    """
    age = max(0.0, wall_clock() - max(st.st_mtime, st.st_ctime))
    return now - age
