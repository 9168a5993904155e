"""When a file has stopped changing: the debounce between "a path was seen" and "parse it now".

A console writes a file over time, and DICOM has no "done" marker, so a file is ready once its size
and mtime have stayed the same for ``stable_s`` (or at once when the writer was seen closing it).
Observations come in as (path, size, mtime_ns, closed); ``ready()`` yields the files whose quiet
window is over and that are unchanged at a fresh stat. Time is an injected clock.

Measured optimisation: a file still inside its quiet window is not stat'ed again on each pass (with
thousands of files arriving, stat-ing them all on every pass dominated the loop). A write in the
meantime shows up as a changed size or mtime at the stat that ends the window, and restarts it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass

Clock = Callable[[], float]
Stat = Callable[[str], os.stat_result]


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    changed_at: float
    closed: bool

    def settling(self, now: float, stable_s: float) -> bool:
        """Still inside its quiet window: it cannot be ready yet (a closed file needs no window)."""
        return not self.closed and now - self.changed_at < stable_s


class Settler:
    """Files seen but not yet taken, each with the size and mtime it had when last seen changing."""

    def __init__(self, stable_s: float, clock: Clock, stat: Stat | None = None) -> None:
        self.stable_s = stable_s
        self._clock = clock
        self._stat = stat  # None: ``os.stat``, looked up at each call
        self._pending: dict[str, _Pending] = {}

    def observe(self, path: str, size: int, mtime_ns: int, closed: bool = False) -> None:
        """A path was seen with this size and mtime: a new or changed version (re)starts its window."""
        prev = self._pending.get(path)
        if prev is None or (prev.size, prev.mtime_ns) != (size, mtime_ns):
            self._pending[path] = _Pending(size, mtime_ns, self._clock(), closed)
        elif closed:
            prev.closed = True

    def ready(self, taken: Container[str] = ()) -> Iterator[tuple[str, os.stat_result]]:
        """Files past their quiet window and unchanged at a fresh stat, with that stat; ``taken`` (files
        being read right now) are passed over without a stat.

        A yielded file stays pending until ``done`` (taken, or given up) or ``again`` (not yet).
        Files gone meanwhile are forgotten; changed ones restart their window.
        """
        now = self._clock()
        stat = self._stat or os.stat
        for path, pend in list(self._pending.items()):
            if path in taken or pend.settling(now, self.stable_s):
                continue
            try:
                st = stat(path)
            except OSError:
                del self._pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (pend.size, pend.mtime_ns):
                self._pending[path] = _Pending(st.st_size, st.st_mtime_ns, now, False)
                continue
            yield path, st

    def again(self, path: str, size: int, mtime_ns: int) -> None:
        """Not ready after all (looked half-written): wait a whole window again, even if it was closed."""
        self._pending[path] = _Pending(size, mtime_ns, self._clock(), False)

    def done(self, path: str) -> None:
        self._pending.pop(path, None)

    def all_settling(self) -> bool:
        """Every pending file is inside its quiet window (true when none is pending): nothing to parse now."""
        now = self._clock()
        return all(p.settling(now, self.stable_s) for p in self._pending.values())

    def next_window_end_in(self) -> float | None:
        """Seconds until the next file still inside its quiet window leaves it (None when none is): when a
        pass with nothing else to do should look again."""
        now = self._clock()
        ends = [p.changed_at + self.stable_s - now for p in self._pending.values() if p.settling(now, self.stable_s)]
        return min(ends) if ends else None

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: object) -> bool:
        return path in self._pending
