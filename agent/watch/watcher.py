"""Turns file-system noise into path events. It never opens anything for writing.

watchdog handlers only enqueue and return; the agent loop owns state and time. Events are lossy
(inotify overflow, no events on SMB/NFS clients, files written into a folder created a moment
ago), so a periodic reconciliation scan re-walks the tree (``walk.walk_files``) and enqueues whatever
it finds; the tracker's file table makes that idempotent.
"""

from __future__ import annotations

import logging
import os
import queue
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PathEvent:
    path: str
    closed: bool = False  # the writer closed the file: no need to wait for size/mtime to settle
    rescan: bool = False  # a directory appeared: walk it (its files may never raise their own events)


class _Enqueue(FileSystemEventHandler):
    def __init__(self, events: queue.Queue[PathEvent]) -> None:
        self._events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        target = getattr(event, "dest_path", "") or event.src_path
        target = os.fsdecode(target)
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)) or event.is_directory:
            if event.event_type in ("created", "moved"):
                self._events.put(PathEvent(target, rescan=True))
            return
        self._events.put(PathEvent(target, closed=isinstance(event, FileClosedEvent)))


class FolderWatcher:
    """Native or polling observer over the export folder, feeding a queue of ``PathEvent``."""

    def __init__(self, folder: Path, events: queue.Queue[PathEvent], mode: str = "native",
                 poll_interval_s: float = 2.0) -> None:
        self.folder = folder
        self.events = events
        self._observer = PollingObserver(timeout=poll_interval_s) if mode == "polling" else Observer()
        self._observer.schedule(_Enqueue(self.events), str(folder), recursive=True)
        self.mode = mode

    def start(self) -> None:
        self._observer.start()
        log.info("watching %s (%s observer)", self.folder, type(self._observer).__name__)

    def stop(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=5)

    def __enter__(self) -> FolderWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

