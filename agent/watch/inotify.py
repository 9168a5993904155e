"""The export tree's inotify watch on Linux, read in one thread (watchdog's observers serve the other systems).

Why not watchdog's inotify observer: it passes each event through three threads, and it pairs every
IN_MOVED_TO with its IN_MOVED_FROM by a linear search of the events still queued, so a console that
writes each file under a dot name and renames it into place (most do) made the search quadratic in a
burst: 9 % of a core in ``make bench``'s 20-series burst, where the goal is 5 %. Its recursive set-up
also recursed (a tree ~1,000 folders deep raised RecursionError). This reader
- asks the kernel only for what the loop needs (``WATCH_MASK``): files closed after writing, renamed in,
  created; folders created, moved in or out; never modifications (one per 64 KiB written);
- drops dot names (``.part`` copies) before it builds a path, and needs no move pairing: a rename into
  place is the file's own event, and a folder moved out just loses its watches;
- adds watches iteratively, one per folder from the root down to ``watch.max_depth`` (the walk goes no
  deeper), never through a link (``IN_DONT_FOLLOW``; the walk follows the links it may);
- on a queue overflow (``IN_Q_OVERFLOW``: events were lost) asks the loop to walk the whole tree again.

A folder that appears is reported as such (``EventFilter`` makes it a rescan): files written into it
before its watch was added raise no event of their own, and the loop's walk of it finds them. A watch that
cannot be added (the inotify watch limit, ``fs.inotify.max_user_watches``) goes to ``on_error``; the
reconcile walk finds what it misses.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import struct
import threading
from collections.abc import Callable

from mediqa.agent.watch.walk import skipped_name

log = logging.getLogger(__name__)

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE
_ADD_FLAGS = IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
_DOT = ord(".")
READ_BYTES = 256 * 1024  # one read takes ~1,000 events of a burst

Offer = Callable[[str, bool, str], None]  # (path, is a folder, kind): EventFilter.offer
OnError = Callable[[str, BaseException], None]  # (while doing what, the exception)


def available() -> bool:
    """inotify is there to use (Linux, a libc that has it)."""
    return _libc() is not None


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


class InotifyTree:
    """Watches ``root`` and its folders down to ``max_depth``; each event goes to ``offer`` in one thread."""

    def __init__(self, root: str, offer: Offer, on_error: OnError, *, max_depth: int) -> None:
        libc = _libc()
        if libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available")
        self._libc = libc
        self.root = root.rstrip(os.sep) or os.sep
        self._offer = offer
        self._on_error = on_error
        self._max_depth = max_depth
        self._folders: dict[int, tuple[str, int]] = {}  # watch descriptor -> (folder, its depth below the root)
        self._limit_hit = False
        self._stopping = threading.Event()
        self._fd = -1
        self._wake_r, self._wake_w = -1, -1
        self.thread = threading.Thread(target=self._run, name="mediqa-watch", daemon=True)

    # --- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Add the watches and start reading; raises OSError when the root itself cannot be watched."""
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self._fd = fd
        try:
            self._watch(self.root, 0, required=True)
            self._add_below(self.root, 0)
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self.thread.start()
        except BaseException:
            self._close_fds()
            raise

    def alive(self) -> bool:
        return self.thread.is_alive() and not self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=5.0)
        self._close_fds()

    def _close_fds(self) -> None:
        for name in ("_fd", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                with contextlib.suppress(OSError):
                    os.close(fd)

    @property
    def watches(self) -> int:
        return len(self._folders)

    # --- watches ----------------------------------------------------------------------------------
    def _watch(self, folder: str, depth: int, *, required: bool = False) -> bool:
        """One folder's watch; False when it cannot be had (gone, not a folder, not readable, the limit)."""
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), WATCH_MASK | _ADD_FLAGS)
        if wd >= 0:
            self._folders[wd] = (folder, depth)
            return True
        err = ctypes.get_errno()
        exc = OSError(err, os.strerror(err))
        if required:
            raise exc
        if err == errno.ENOSPC and not self._limit_hit:
            self._limit_hit = True  # said once: every folder after it fails the same way
            self._on_error("adding watches (the inotify watch limit, fs.inotify.max_user_watches, is reached)", exc)
        return False

    def _add_below(self, top: str, top_depth: int) -> None:
        """Watches for the folders below ``top`` (watched already), down to ``max_depth``, without recursion."""
        todo = [(top, top_depth)]
        while todo:
            folder, depth = todo.pop()
            if depth >= self._max_depth:
                continue
            try:
                with os.scandir(folder) as entries:
                    below = [e.path for e in entries if not skipped_name(e.name) and e.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # gone or unreadable: the walk reports what it cannot list
            for path in below:
                if self._watch(path, depth + 1):
                    todo.append((path, depth + 1))

    def _drop_below(self, folder: str) -> None:
        """A folder moved away: its watches and those below it go (moved within the tree, they come back)."""
        prefix = folder + os.sep
        for wd, (path, _) in list(self._folders.items()):
            if path == folder or path.startswith(prefix):
                del self._folders[wd]
                self._libc.inotify_rm_watch(self._fd, wd)

    # --- reading ----------------------------------------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping.is_set():
            try:
                if not poller.poll(1000) or self._stopping.is_set():
                    continue
                data = os.read(self._fd, READ_BYTES)
            except BlockingIOError:
                continue
            except OSError as exc:
                self._on_error("reading file events", exc)
                self._stopping.wait(1.0)  # no busy loop on a hard fault
                continue
            try:
                self._handle(data)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a bug in one batch of events
                self._on_error("handling file events", exc)

    def _handle(self, data: bytes) -> None:
        offset, end = 0, len(data)
        folders = self._folders
        unpack, head = _EVENT.unpack_from, _EVENT.size
        while offset < end:
            wd, mask, _cookie, length = unpack(data, offset)
            start = offset + head
            offset = start + length
            if length and data[start] == _DOT:
                continue  # a dot file (a copy in progress, renamed when done): most events of an export
            name = data[start:offset].rstrip(b"\0")
            if mask & IN_Q_OVERFLOW:
                log.warning("file watcher: the kernel's event queue overflowed: walking the export tree again")
                self._offer(self.root, True, "created")  # a rescan of the whole tree
                continue
            if mask & IN_IGNORED:
                gone = folders.pop(wd, None)
                if gone is not None and gone[1] == 0:
                    self._on_error("watching the export folder", OSError(errno.ENOENT, "the folder was removed"))
                continue
            if not name:
                continue  # an event of the folder itself
            where = folders.get(wd)
            if where is None:
                continue  # a watch dropped a moment ago
            folder, depth = where
            text = os.fsdecode(name)
            path = folder + os.sep + text
            if mask & IN_ISDIR:
                if mask & IN_MOVED_FROM:
                    self._drop_below(path)
                    continue
                if depth < self._max_depth and not skipped_name(text) and self._watch(path, depth + 1):
                    self._add_below(path, depth + 1)
                self._offer(path, True, "moved" if mask & IN_MOVED_TO else "created")
                continue
            if mask & IN_CLOSE_WRITE:
                self._offer(path, False, "closed")
            elif mask & IN_MOVED_TO:
                self._offer(path, False, "moved")
            elif mask & IN_CREATE:
                self._offer(path, False, "created")
