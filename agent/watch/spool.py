"""The DICOM node's spool folder: durable writes, the bytes it holds, and its housekeeping.

Layout: ``<spool>/<association id>/<sha256(SOP Instance UID)[:32]>.dcm``, files 0600, folders 0700; a
file being written is ``.<name>.part`` (a dot file the folder walk skips), renamed to its final name
only once complete and synced, so a kill -9 leaves no final name half-written. ``recover`` (at start)
deletes leftover temp files and empty folders and counts the bytes kept.

Space: ``reserve`` before a write refuses beyond ``max_bytes`` or under ``DISK_RESERVE_BYTES`` free on
the disk (the agent's database lives there too), logging "full" once until a write succeeds again.
Nothing here deletes to make room: files go only when the agent is done with them (``release`` when
``keep_hours`` is 0, ``prune`` after ``keep_hours``, both asked for by whoever knows they were scored).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
DISK_RESERVE_BYTES = 256 * 1024**2  # refuse before the disk itself is full: the agent's DB lives there too


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(PART_SUFFIX)


class Spool:
    """Bytes accounting and file life cycle of one spool folder; thread-safe."""

    def __init__(self, root: Path, max_bytes: int, keep_hours: float) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.keep_hours = keep_hours
        self._lock = threading.Lock()
        self._used = 0
        self._full_logged = False

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used

    def recover(self) -> int:
        """Create the folder; delete temp files a crash left behind and empty folders; count what is kept."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        used = 0
        for dirpath, _, filenames in os.walk(self.root, topdown=False):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if is_temp(name):
                    os.unlink(path)
                else:
                    used += os.path.getsize(path)
            if dirpath != str(self.root) and not os.listdir(dirpath):
                os.rmdir(dirpath)
        with self._lock:
            self._used = used
        return used

    def files(self) -> list[Path]:
        """Every complete file, oldest folder first (temp files left out)."""
        out: list[Path] = []
        with contextlib.suppress(FileNotFoundError):
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                with contextlib.suppress(FileNotFoundError):
                    out.extend(sorted(f for f in folder.iterdir() if not is_temp(f.name)))
        return out

    # -- writing --------------------------------------------------------------------------------------
    def reserve(self, size: int) -> bool:
        free = shutil.disk_usage(self.root).free
        with self._lock:
            if self._used + size <= self.max_bytes and free - size >= DISK_RESERVE_BYTES:
                self._used += size
                return True
            first, self._full_logged = not self._full_logged, True
            used = self._used
        if first:  # once until a store succeeds again: a retrying sender would flood the log
            log.warning("DICOM spool full (%d of %d bytes used, %d free on disk): answering out of resources",
                        used, self.max_bytes, free)
        return False

    def unreserve(self, size: int) -> None:
        with self._lock:
            self._used -= size

    def stored(self, replaced: int) -> None:
        """A reserved write succeeded; ``replaced`` bytes of an older file of the same name are gone."""
        with self._lock:
            self._used -= replaced
            self._full_logged = False

    @staticmethod
    def write(final: Path, data: bytes) -> None:
        """Temp name, fsync, rename, fsync the folder: the final name only ever holds a complete file."""
        final.parent.mkdir(mode=0o700, exist_ok=True)
        temp = final.with_name(f".{final.name}{PART_SUFFIX}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(final.parent, os.O_RDONLY)  # makes the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- deleting -------------------------------------------------------------------------------------
    def release(self, path: str | os.PathLike[str]) -> bool:
        """The agent is done with ``path``: delete it now when ``keep_hours`` is 0 (True if deleted)."""
        target = Path(path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise ValueError("not a file of this node's spool")
        return self.keep_hours == 0 and self.delete(target)

    def prune(self, now: float | None, active: Callable[[], Collection[Path]],
              done: Callable[[Path], bool] | None = None) -> int:
        """Delete files older than ``keep_hours`` (none when it is 0) for which ``done`` is true (all, when
        None), and empty folders, except those ``active()`` names (associations still open)."""
        cutoff = (time.time() if now is None else now) - self.keep_hours * 3600
        removed = 0
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return 0
        busy = set(active())  # after listing: a listed folder's association, if open, is in it
        for folder in [p for p in folders if p not in busy]:
            with contextlib.suppress(FileNotFoundError):  # released meanwhile
                for file in folder.iterdir():
                    if self.keep_hours > 0 and not is_temp(file.name) and file.stat().st_mtime < cutoff \
                            and (done is None or done(file)):
                        removed += self.delete(file)
                if not any(folder.iterdir()):
                    folder.rmdir()
        return removed

    def delete(self, path: Path) -> bool:
        # Under the lock: whoever sees the file gone must see its bytes gone too.
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return False
            self._used -= size
        return True
