"""Atomic writes and an inter-process file lock for the engine cache.

A reader (the running agent) must never see half a plan, and two ``mediqa engine build`` runs must
not interleave: writes go to a temp file in the same directory and are renamed with ``os.replace``
(atomic on POSIX and Windows); writers hold an exclusive lock on ``<cache>/.lock``
(``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mediqa.errors import MediqaError

logger = logging.getLogger(__name__)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | Path, value: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX only; Windows has no directory handles to fsync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CacheLocked(MediqaError):
    """Another process holds the engine cache lock for longer than we were willing to wait."""


class FileLock:
    """Exclusive advisory lock on one file, usable as a context manager; not re-entrant."""

    def __init__(self, path: str | Path, timeout_s: float = 600.0, poll_s: float = 0.05) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            if _try_lock(fd):
                break
            if time.monotonic() >= deadline:
                os.close(fd)
                raise CacheLocked(
                    f"engine cache {self.path.parent} is locked by another process (waited {self.timeout_s:.0f} s)",
                    "wait for the other `mediqa engine build` to finish, then retry",
                )
            time.sleep(self.poll_s)
        self._fd = fd
        logger.debug("locked %s", self.path)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            _unlock(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
        logger.debug("unlocked %s", self.path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


if os.name == "nt":  # pragma: no cover - exercised on Windows consoles only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
