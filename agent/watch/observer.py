"""watchdog's observers as the export tree's reader where this package's inotify reader is not used: polling
(network shares get no file events) and the native observers of other systems (Windows, macOS).

Imported only then (watchdog and its observers cost ~5.6 MB resident). What is guarded here, and why, is in
``watcher``'s docstring: watchdog's threads are kept running past an exception in their event handling
(recorded through ``on_error``), and where the observer has no close events (everything but watchdog's own
inotify observer) it listens to modifications instead (``WATCHED_EVENTS``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

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

from mediqa.agent.watch.events import EventFilter

OnError = Callable[[str, BaseException], None]  # (while doing what, the exception): FolderWatcher.record_failure

# What the loop needs to hear about: where the OS says when a writer closed a file (inotify) ...
WATCHED_EVENTS_WITH_CLOSE: tuple[type[FileSystemEvent], ...] = (
    FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent)
# ... and elsewhere (no close events: a file rewritten in place only shows as modified).
WATCHED_EVENTS: tuple[type[FileSystemEvent], ...] = (
    FileCreatedEvent, FileMovedEvent, FileModifiedEvent, DirCreatedEvent, DirMovedEvent)


class _Enqueue(FileSystemEventHandler):
    """watchdog's events -> ``EventFilter``."""

    def __init__(self, offer: EventFilter, on_error: OnError) -> None:
        self._filter = offer
        self._on_error = on_error

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._enqueue(event)
        except Exception as exc:  # noqa: BLE001 - an exception here would end watchdog's dispatcher thread
            self._on_error("handling a file event", exc)

    def _enqueue(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        target = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
        is_dir = isinstance(event, (DirCreatedEvent, DirMovedEvent)) or event.is_directory
        kind = "closed" if isinstance(event, FileClosedEvent) else event.event_type
        self._filter.offer(target, is_dir, kind)


def start_observer(root: str, offer: EventFilter, on_error: OnError, *, polling: bool, poll_interval_s: float,
                   recursive: bool) -> BaseObserver:
    """A started observer over ``root`` feeding ``offer``; raises when it cannot start (nothing left running)."""
    observer: BaseObserver = PollingObserver(timeout=poll_interval_s) if polling else Observer()
    wanted = WATCHED_EVENTS_WITH_CLOSE if has_close_events(observer) else WATCHED_EVENTS
    try:
        observer.schedule(_Enqueue(offer, on_error), root, recursive=recursive, event_filter=list(wanted))
        for emitter in observer.emitters:
            _guard_emitter(emitter, on_error)
        _guard_inotify(observer, on_error)
        observer.start()
    except BaseException:
        try:
            observer.stop()
        finally:
            for thread in observer_threads(observer):
                if thread.is_alive():
                    thread.join(timeout=5.0)
        raise
    return observer


def has_close_events(observer: BaseObserver) -> bool:
    """watchdog's inotify observer reports when a writer closes a file; its other observers do not."""
    return type(observer).__name__ in ("InotifyObserver", "InotifyFullObserver")


def observer_threads(observer: BaseObserver) -> list[threading.Thread]:
    threads: list[threading.Thread] = [observer, *observer.emitters]
    reader = getattr(observer, "_inotify_fd", None)
    if isinstance(reader, threading.Thread):
        threads.append(reader)
    return threads


def _guard_emitter(emitter: EventEmitter, on_error: OnError) -> None:
    """The emitter's loop, but an exception in one round is recorded instead of ending the thread."""
    def run() -> None:
        while emitter.should_keep_running():
            try:
                emitter.queue_events(emitter.timeout)
            except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on a deep tree moved in
                on_error("reading file events", exc)
                emitter.stopped_event.wait(min(1.0, float(emitter.timeout)))  # no busy loop on a hard fault

    emitter.run = run  # type: ignore[method-assign]


def _guard_inotify(observer: BaseObserver, on_error: OnError) -> None:
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
            on_error("adding watches for a new folder", exc)

    reader.handle_event = handle_event  # type: ignore[attr-defined]
