"""Turns file-system noise into path events. It never opens anything for writing.

watchdog handlers only enqueue and return; the agent loop owns state and time. Events are lossy
(inotify overflow, no events on SMB/NFS clients, files written into a folder created a moment
ago), so a periodic reconciliation scan re-walks the tree (``walk.walk_files``) and enqueues whatever
it finds; the tracker's file table makes that idempotent.

Health. watchdog adds its watches recursively (``os.walk``, and ``DirectorySnapshot`` for polling): on
Python 3.11 a tree ~1,000 folders deep raises RecursionError, at start in the caller's thread, or later
in watchdog's own threads when such a tree is moved in, which then die silently. So the watcher
- probes the tree at start (iteratively): deeper than ``max_depth``, it watches the top folder only,
  not recursively (the reconcile walk, which stops at ``max_depth`` anyway, finds the rest);
- falls back the same way when starting the recursive watch raises anyway, and never raises from
  ``start`` (a watch that cannot start at all is reported, not fatal: the reconcile walk still runs);
- keeps watchdog's threads running past an exception in their event handling, and records it;
- applies the walk's rules to events: nothing deeper than ``max_depth``, no link leaving the root, no dot
  file or folder (``.part`` copies, sync droppings) and no DICOMDIR.

Cost. A console writes each file in many small writes; inotify reports one IN_MODIFY per write (one per
64 KiB with ``cp``), and each became a Python event in watchdog's threads. Where the OS reports the end
of a write (inotify's IN_CLOSE_WRITE), the native watch asks only for what the loop needs
(``event_filter`` narrows the inotify mask): files created, moved in, closed after writing, folders
created or moved in (``WATCHED_EVENTS_WITH_CLOSE``). Elsewhere (Windows, macOS, polling) it listens to
modifications instead of closes (``WATCHED_EVENTS``): a file rewritten in place has no other sign. An
event equal to the one just queued, still waiting in the queue, is dropped (coalesced).

The loop owner polls ``alive()`` and ``failure()`` (cheap, thread-safe): while ``failure()`` is not None
native events are incomplete or gone, so it should shorten the reconcile interval (and report the text
as the watcher's health); ``alive()`` False means no events at all (never started, stopped, or a thread
died).
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, EventEmitter
from watchdog.observers.polling import PollingObserver

from mediqa.agent.watch.walk import FOLLOW_LINKS, depth_below, is_inside, skipped_name, tree_deeper_than

log = logging.getLogger(__name__)

# What the loop needs to hear about: where the OS says when a writer closed a file (inotify) ...
WATCHED_EVENTS_WITH_CLOSE: tuple[type[FileSystemEvent], ...] = (
    FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent)
# ... and elsewhere (no close events: a file rewritten in place only shows as modified).
WATCHED_EVENTS: tuple[type[FileSystemEvent], ...] = (
    FileCreatedEvent, FileMovedEvent, FileModifiedEvent, DirCreatedEvent, DirMovedEvent)


@dataclass(frozen=True)
class PathEvent:
    path: str
    closed: bool = False  # the writer closed the file (or renamed it into place): no need to wait for it to settle
    rescan: bool = False  # a directory appeared: walk it (its files may never raise their own events)


def _describe(exc: BaseException) -> str:
    """Exception type and, for OS errors, the reason: never a message that may carry a path."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else type(exc).__name__
    return type(exc).__name__


class _Enqueue(FileSystemEventHandler):
    def __init__(self, events: queue.Queue[PathEvent], root: str, max_depth: int, follow_links: str,
                 on_error: FolderWatcher) -> None:
        self._events = events
        self._root = root
        self._boundary = os.path.realpath(root)
        self._max_depth = max_depth
        self._follow_links = follow_links
        self._watcher = on_error
        self._last: PathEvent | None = None  # the event queued last (only this thread writes it)
        self._prefix = root.rstrip(os.sep) + os.sep

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._enqueue(event)
        except Exception as exc:  # noqa: BLE001 - an exception here would end watchdog's dispatcher thread
            self._watcher.record_failure("handling a file event", exc)

    def _enqueue(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        target = getattr(event, "dest_path", "") or event.src_path
        target = os.fsdecode(target)
        is_dir = isinstance(event, (DirCreatedEvent, DirMovedEvent)) or event.is_directory
        parts = self._parts_below_root(target)
        depth = len(parts) if parts is not None else -1
        folder_depth = depth if is_dir else depth - 1  # the folder this file lies in
        if parts is None or folder_depth > self._max_depth:
            return  # the walk does not go there either (watch.max_depth)
        if any(skipped_name(part) for part in parts):
            return  # nor there (a dot file or folder, a DICOMDIR)
        # A link is created or moved in, never closed after a write (writes through a link are reported
        # on the file it points to), so a close event needs no lstat: half the events of an export.
        if not isinstance(event, FileClosedEvent) and os.path.islink(target) and (
                self._follow_links == "never" or not is_inside(self._boundary, os.path.realpath(target))):
            return  # the walk does not follow this link either (watch.follow_links)
        if is_dir:
            if event.event_type in ("created", "moved"):
                self._put(PathEvent(target, rescan=True))
            return
        # A file renamed into place (``.part`` -> its name) was finished before the rename: as good as closed.
        self._put(PathEvent(target, closed=isinstance(event, (FileClosedEvent, FileMovedEvent))))

    def _parts_below_root(self, target: str) -> list[str] | None:
        """The names from the root down to ``target`` ([] for the root itself); None when not below it.

        watchdog joins the watched root and the names it reads, so a prefix test answers for nearly every
        event (``relpath`` normalises both paths on each call: most of this handler's cost in a burst).
        """
        if target.startswith(self._prefix) and os.sep + os.curdir not in target:
            return target[len(self._prefix):].split(os.sep)
        depth = depth_below(self._root, target)
        if depth < 0:
            return None
        return [] if depth == 0 else os.path.relpath(target, self._root).split(os.sep)

    def _put(self, event: PathEvent) -> None:
        """Queue an event, unless the same one is still waiting in the queue (the loop has not taken it)."""
        if event == self._last and not self._events.empty():
            return  # the last item queued is taken last: while the queue is not empty, it is still there
        self._last = event
        self._events.put(event)


class FolderWatcher:
    """Native or polling observer over the export folder, feeding a queue of ``PathEvent``.

    ``alive()``/``failure()`` report its health (see the module docstring); ``max_depth`` and
    ``follow_links`` are ``watch.max_depth``/``watch.follow_links``, the same rules as ``walk_files``.
    """

    def __init__(self, folder: Path, events: queue.Queue[PathEvent], mode: str = "native",
                 poll_interval_s: float = 2.0, *, max_depth: int = 32, follow_links: str = "inside") -> None:
        if follow_links not in FOLLOW_LINKS:
            raise ValueError(f"follow_links must be one of {FOLLOW_LINKS}, not {follow_links!r}")
        self.folder = folder
        self.events = events
        self.mode = mode
        self.max_depth = max_depth
        self.follow_links = follow_links
        self.recursive = True  # False once the watcher fell back to the top folder only
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._failure: str | None = None  # the first thing that went wrong (later ones are counted)
        self._failures = 0
        self._limited: str | None = None
        self._observer: BaseObserver | None = None
        self._stopped = False

    # --- health ---------------------------------------------------------------------------------
    def alive(self) -> bool:
        """True while the observer and every one of its threads run (False before start, after stop)."""
        with self._lock:
            observer = self._observer
            stopped = self._stopped
        return observer is not None and not stopped and not _dead_threads(observer)

    def failure(self) -> str | None:
        """Why native events are incomplete or gone; None while the watch covers the whole tree.

        Set when the watch could not start, fell back to the top folder (tree deeper than
        ``watch.max_depth``), a watchdog thread died or raised while handling events. None again only
        after ``stop()``. The text has no paths (they can carry patient names).
        """
        with self._lock:
            observer, stopped, failure, limited = self._observer, self._stopped, self._failure, self._limited
        if stopped:
            return None
        if observer is not None:
            dead = _dead_threads(observer)
            if dead:
                return f"watchdog thread(s) stopped: {', '.join(dead)}" + (f" (after {failure})" if failure else "")
        return failure or limited

    def record_failure(self, where: str, exc: BaseException) -> None:
        """Note an exception in watchdog's threads (they keep running); the first one is what ``failure`` says."""
        with self._lock:
            self._failures += 1
            first = self._failure is None
            if first:
                self._failure = (f"{_describe(exc)} while {where}: native events may be missing below the "
                                 "export root; the reconcile walk still finds the files")
        if first:
            log.warning("file watcher: %s while %s; relying on the reconcile walk for what it missed",
                        _describe(exc), where)
        else:
            log.debug("file watcher: %s while %s (%d so far)", _describe(exc), where, self._failures)

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start watching; never raises for the file tree's sake (see ``failure()``)."""
        root = os.fspath(self.folder)
        if tree_deeper_than(root, self.max_depth):
            self.recursive = False
            self._limited = (f"the export tree is deeper than watch.max_depth ({self.max_depth}): native events "
                             "come from its top folder only; the reconcile walk finds the rest")
            log.warning("file watcher: %s", self._limited)
        try:
            observer = self._start_observer(root, recursive=self.recursive)
        except Exception as exc:  # noqa: BLE001 - e.g. RecursionError adding watches on a tree that deepened
            observer = None
            if self.recursive:
                self.recursive = False
                self._limited = (f"{_describe(exc)} while watching the tree recursively: native events come "
                                 "from its top folder only; the reconcile walk finds the rest")
                log.warning("file watcher: %s", self._limited)
                try:
                    observer = self._start_observer(root, recursive=False)
                except Exception as again:  # noqa: BLE001
                    exc = again
            if observer is None:
                with self._lock:
                    self._failure = f"the file watch could not start ({_describe(exc)}): only the reconcile walk runs"
                log.error("file watcher: %s", self._failure)
                return
        with self._lock:
            self._observer = observer
        log.info("watching %s (%s observer%s)", self.folder, type(observer).__name__,
                 "" if self.recursive else ", top folder only")

    def _start_observer(self, root: str, *, recursive: bool) -> BaseObserver:
        observer: BaseObserver = (PollingObserver(timeout=self._poll_interval_s) if self.mode == "polling"
                                  else Observer())
        wanted = WATCHED_EVENTS_WITH_CLOSE if _has_close_events(observer) else WATCHED_EVENTS
        try:
            observer.schedule(_Enqueue(self.events, root, self.max_depth, self.follow_links, self), root,
                              recursive=recursive, event_filter=list(wanted))
            for emitter in observer.emitters:
                self._guard_emitter(emitter)
            self._guard_inotify(observer)
            observer.start()
        except BaseException:
            _dispose(observer)
            raise
        _name_threads(observer)
        return observer

    def _guard_emitter(self, emitter: EventEmitter) -> None:
        """The emitter's loop, but an exception in one round is recorded instead of ending the thread."""
        def run() -> None:
            while emitter.should_keep_running():
                try:
                    emitter.queue_events(emitter.timeout)
                except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on a deep tree moved in
                    self.record_failure("reading file events", exc)
                    emitter.stopped_event.wait(min(1.0, float(emitter.timeout)))  # no busy loop on a hard fault

        emitter.run = run  # type: ignore[method-assign]

    def _guard_inotify(self, observer: BaseObserver) -> None:
        """watchdog's inotify reader thread adds watches for new folders (recursively): keep it alive.

        It is started with the observer object, before a run method could be replaced, but it looks up
        ``handle_event`` for every event. Other observers (polling, other platforms) have no such thread.
        """
        reader = getattr(observer, "_inotify_fd", None)
        original = getattr(reader, "handle_event", None)
        if not isinstance(reader, threading.Thread) or original is None:
            return

        def handle_event(event: object) -> None:
            try:
                original(event)
            except Exception as exc:  # noqa: BLE001 - the thread would end and every event after it be lost
                self.record_failure("adding watches for a new folder", exc)

        reader.handle_event = handle_event  # type: ignore[attr-defined]

    def stop(self) -> None:
        with self._lock:
            observer, self._observer = self._observer, None
            self._stopped = True
        if observer is not None:
            _dispose(observer)

    def __enter__(self) -> FolderWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _name_threads(observer: BaseObserver, name: bytes = b"mediqa-watch") -> None:
    """Give watchdog's threads an OS name (``top -H``, ``/proc/<pid>/task/*/comm``; Linux only, best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        setname = ctypes.CDLL(None).pthread_setname_np
        setname.argtypes = [ctypes.c_ulong, ctypes.c_char_p]
        for thread in _threads(observer):
            if thread.ident is not None:
                setname(thread.ident, name[:15])
    except (OSError, AttributeError) as exc:  # a libc without it: the threads keep the process's name
        log.debug("file watcher: threads not named (%s)", type(exc).__name__)


def _has_close_events(observer: BaseObserver) -> bool:
    """inotify (Linux) reports when a writer closes a file; the other native observers and polling do not."""
    return type(observer).__name__ in ("InotifyObserver", "InotifyFullObserver")


def _threads(observer: BaseObserver) -> list[threading.Thread]:
    threads: list[threading.Thread] = [observer, *observer.emitters]
    reader = getattr(observer, "_inotify_fd", None)
    if isinstance(reader, threading.Thread):
        threads.append(reader)
    return threads


def _dead_threads(observer: BaseObserver) -> list[str]:
    return [type(t).__name__ for t in _threads(observer) if not t.is_alive()]


def _dispose(observer: BaseObserver) -> None:
    """Stop an observer and its threads, started or not, without raising."""
    try:
        observer.stop()  # also stops the emitters and the inotify reader (and joins the latter)
    except Exception as exc:  # noqa: BLE001 - stopping must not fail the caller
        log.debug("file watcher: stopping the observer raised %s", _describe(exc))
    deadline = time.monotonic() + 5.0
    for thread in _threads(observer):
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
