"""The inter-process lock of the engine cache.

Two ``mediqa engine build`` runs must not interleave: writers hold an exclusive lock on
``<cache>/.lock`` (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows). The writes themselves
are atomic (:mod:`mediqa.engines.files`), so a reader (the running agent) never needs the lock.
The platform branches test ``sys.platform`` so mypy checks each one (``mypy --platform win32``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from mediqa.errors import MediqaError

logger = logging.getLogger(__name__)


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


if sys.platform == "win32":  # pragma: no cover - exercised on Windows consoles only
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
