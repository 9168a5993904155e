"""Turns file-system noise into path events. It never opens anything for writing.

Readers only enqueue and return; the agent loop owns state and time. Events are lossy (inotify overflow,
no events on SMB/NFS clients, files written into a folder created a moment ago), so a periodic
reconciliation scan re-walks the tree (``walk.walk_files``) and enqueues whatever it finds; the tracker's
file table makes that idempotent. Every event passes the walk's rules (``events.EventFilter``: nothing
deeper than ``max_depth``, no link leaving the root, no dot file or folder, no DICOMDIR).

Readers. On Linux the native watch is this package's inotify reader (``inotify.InotifyTree``: one thread,
only the events the loop needs, watches added iteratively down to ``max_depth``; why not watchdog's is
said there). Elsewhere (Windows, macOS) and for polling it is a watchdog observer, where
- watchdog adds its watches recursively (``os.walk``, and ``DirectorySnapshot`` for polling): on Python
  3.11 a tree ~1,000 folders deep raises RecursionError, at start or later in watchdog's own threads. So
  the tree is probed at start (iteratively): deeper than ``max_depth``, the top folder only is watched,
  not recursively (the reconcile walk, which stops at ``max_depth`` anyway, finds the rest), and the same
  fallback is taken when starting the recursive watch raises anyway;
- watchdog's threads are kept running past an exception in their event handling, which is recorded;
- without close events it listens to modifications (``WATCHED_EVENTS``): a file rewritten in place has
  no other sign (one event per write: coalesced in the queue, and offered once by the loop).
``start`` never raises: a watch that cannot start at all is reported, not fatal (the walk still runs).

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
from pathlib import Path
from typing import TYPE_CHECKING, Union

from mediqa.agent.watch import inotify
from mediqa.agent.watch.events import EventFilter, PathEvent
from mediqa.agent.watch.walk import FOLLOW_LINKS, tree_deeper_than

if TYPE_CHECKING:  # watchdog is imported only where it is used (polling, other systems): ~5.6 MB
    from watchdog.observers.api import BaseObserver

__all__ = ["FolderWatcher", "PathEvent"]

Watch = Union["BaseObserver", inotify.InotifyTree]

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    """Exception type and, for OS errors, the reason: never a message that may carry a path."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else type(exc).__name__
    return type(exc).__name__


class FolderWatcher:
    """Native or polling observer over the export folder, feeding a queue of ``PathEvent``.

    ``alive()``/``failure()`` report its health (see the module docstring); ``max_depth`` and
    ``follow_links`` are ``watch.max_depth``/``watch.follow_links``, the same rules as ``walk_files``.
    """

    def __init__(self, folder: Path, events: queue.SimpleQueue[PathEvent], mode: str = "native",
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
        self._observer: Watch | None = None
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
                return f"watch thread(s) stopped: {', '.join(dead)}" + (f" (after {failure})" if failure else "")
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
        if self.mode == "native" and inotify.available():
            self._start_inotify(root)
            return
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

    def _start_inotify(self, root: str) -> None:
        """Linux: this package's reader (``inotify``), bounded by ``max_depth`` and iterative, so no fallback."""
        tree = inotify.InotifyTree(root, EventFilter(self.events, root, self.max_depth, self.follow_links).offer,
                                   self.record_failure, max_depth=self.max_depth)
        try:
            tree.start()
        except Exception as exc:  # noqa: BLE001 - e.g. the folder is gone, or no inotify instance is left
            tree.stop()
            with self._lock:
                self._failure = f"the file watch could not start ({_describe(exc)}): only the reconcile walk runs"
            log.error("file watcher: %s", self._failure)
            return
        with self._lock:
            self._observer = tree
        _name_threads(tree)
        log.info("watching %s (inotify, %d folder%s)", self.folder, tree.watches, "" if tree.watches == 1 else "s")

    def _start_observer(self, root: str, *, recursive: bool) -> BaseObserver:
        from mediqa.agent.watch.observer import start_observer

        observer = start_observer(root, EventFilter(self.events, root, self.max_depth, self.follow_links),
                                  self.record_failure, polling=self.mode == "polling",
                                  poll_interval_s=self._poll_interval_s, recursive=recursive)
        _name_threads(observer)
        return observer

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


def _name_threads(observer: Watch, name: bytes = b"mediqa-watch") -> None:
    """Give the watch's threads an OS name (``top -H``, ``/proc/<pid>/task/*/comm``; Linux only, best effort)."""
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


def _threads(observer: Watch) -> list[threading.Thread]:
    if isinstance(observer, inotify.InotifyTree):
        return [observer.thread]
    from mediqa.agent.watch.observer import observer_threads  # imported already: it made the observer

    return observer_threads(observer)


def _dead_threads(observer: Watch) -> list[str]:
    return [t.name if isinstance(observer, inotify.InotifyTree) else type(t).__name__
            for t in _threads(observer) if not t.is_alive()]


def _dispose(observer: Watch) -> None:
    """Stop a watch and its threads, started or not, without raising."""
    try:
        observer.stop()  # watchdog's also stops the emitters and the inotify reader (and joins the latter)
    except Exception as exc:  # noqa: BLE001 - stopping must not fail the caller
        log.debug("file watcher: stopping the observer raised %s", _describe(exc))
    deadline = time.monotonic() + 5.0
    for thread in _threads(observer):
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
