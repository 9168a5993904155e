"""Give memory back after a backlog: the agent runs for months beside a scanner, mostly idle.

Indexing a start-up backlog of thousands of files leaves the heap fragmented; glibc keeps the freed
pages, so the resident size stays at its peak. When the loop goes idle after such a backlog,
``release_memory`` collects garbage, asks SQLite to drop its page cache and glibc to return free pages to
the system (``malloc_trim(0)``, Linux with glibc only; elsewhere it does nothing). Measured by
``scripts/bench_agent.py --only idle``.

``tune_malloc`` (called once by ``mediqa watch`` before any thread starts) fixes glibc's mmap threshold
at 16 MiB (glibc otherwise raises it after each freed big block, up to 32 MiB), its trim threshold at
64 MiB, and allows at most two malloc arenas (one per thread otherwise). The first tuning fixed the mmap
threshold at 256 KiB (measured then on a 2,400-file backlog of 16 series: peak 364 -> 262 MB, idle
afterwards 262 -> 234 MB), but that made every model pass map and fault in its working buffers again:
the constants below say what it cost. Where ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_ARENA_MAX`` is set in
the environment, the agent leaves glibc as that site tuned it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

RELEASE_AFTER_FILES = 2000  # files indexed since the last release that make an idle moment worth a release

_trim: Callable[[int], int] | None = None
_looked_up = False


def _malloc_trim() -> Callable[[int], int] | None:
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _trim = libc.malloc_trim
                _trim.argtypes = [ctypes.c_size_t]
                _trim.restype = ctypes.c_int
            except (OSError, AttributeError):  # musl and others have no malloc_trim
                _trim = None
    return _trim


M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -8, -3, -1  # glibc's mallopt parameters (malloc.h)
# Blocks this big or bigger are mapped (and unmapped when freed); smaller ones come from the heap.
# 256 KiB (the first tuning) also mapped ONNX Runtime's and numpy's working buffers (1-16 MiB): every model
# pass faulted them in again, and a series' analysis took 1.8x as long (1.1M minor faults against 0.18M
# for 6 series, sys time 3.5 against 0.6 s; tests/agent/test_loop_stats.py).
MMAP_THRESHOLD = 16 * 1024 * 1024
# The heap's top is given back only beyond this much free (glibc's default, 128 KiB, once the threshold is
# fixed, returned and re-faulted the working set between passes); idle after a backlog, malloc_trim(0)
# gives everything free back anyway.
TRIM_THRESHOLD = 64 * 1024 * 1024
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold and cap its arenas (see the module docstring); True if glibc took both."""
    if not sys.platform.startswith("linux") or _malloc_trim() is None:  # glibc has malloc_trim, musl has not
        return False
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_ARENA_MAX"):
        return False  # a site's own glibc tuning (systemd Environment=...) wins: mallopt would override it
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return False
    return (bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            and bool(mallopt(M_ARENA_MAX, ARENA_MAX)))


def avoid_huge_pages() -> bool:
    """Stop numpy asking for transparent huge pages (True if this call turned it off).

    numpy madvises every buffer of 4 MiB or more MADV_HUGEPAGE. Below the mmap threshold such buffers come
    from the heap, so the advice stays on heap ranges after they are freed, and where THP is in
    ``madvise`` mode (Debian's default) khugepaged collapses them into 2 MiB pages while the agent is idle:
    on the bench's 6,000-file backlog, idle RSS grew 184.9 -> 189.6 MB in the 15 s after the release with
    the advice, and stayed at 182.7 MB without it. The agent's biggest arrays are a few slices (a few
    MiB), which gain nothing measurable from huge pages. A site's ``NUMPY_MADVISE_HUGEPAGE`` wins.
    """
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is not None:
        return False
    import importlib

    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if setter is None:
        return False
    setter(False)
    return True


def freeze_startup_objects() -> int:
    """Put what start-up made (modules, the scorer's session, the config) beyond the garbage collector's
    full passes; returns how many objects that is.

    They live as long as the process, yet each full collection walked all of them: one landed in a
    2,000-slice CT's scoring and took 28.6 ms of it (``gc.callbacks`` timing in the bench's latency run).
    ``gc.freeze`` leaves objects made later collectable as before.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw_startup_objects() -> None:
    """Undo ``freeze_startup_objects`` (``mediqa watch`` run in-process, by a test or a tool, then goes on)."""
    gc.unfreeze()


def release_memory(shrink_db: Callable[[], object] | None = None) -> bool:
    """Collect garbage, shrink SQLite's cache (``shrink_db``), return free heap pages; True if trimmed."""
    gc.collect()
    if shrink_db is not None:
        try:
            shrink_db()
        except Exception as exc:  # noqa: BLE001 - an optimisation: never a reason to fail the pass
            log.debug("shrinking the state database's cache: %s", type(exc).__name__)
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
