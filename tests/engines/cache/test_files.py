"""The engine cache's inter-process lock (atomic writes: tests/engines/test_atomic_write.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mediqa.engines.cache.files import CacheLocked, FileLock

HOLDER = """
import sys, time
from mediqa.engines.cache.files import FileLock
with FileLock(sys.argv[1]):
    open(sys.argv[2], "w").write("locked")
    time.sleep(float(sys.argv[3]))
"""


def _start_holder(lock: Path, flag: Path, hold_s: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(flag), str(hold_s)])
    deadline = time.monotonic() + 20
    while not flag.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("lock holder did not start")
        time.sleep(0.02)
    return proc


@pytest.mark.slow
def test_lock_excludes_a_second_process(tmp_path):
    lock, flag = tmp_path / ".lock", tmp_path / "flag"
    proc = _start_holder(lock, flag, 1.5)
    try:
        with pytest.raises(CacheLocked, match="locked by another process"):
            FileLock(lock, timeout_s=0.2).acquire()
        start = time.monotonic()
        with FileLock(lock, timeout_s=20) as held:  # waits for the holder to release
            assert held.held
            assert proc.poll() is not None or time.monotonic() - start > 0.1
    finally:
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_lock_is_released_on_exception(tmp_path):
    lock = tmp_path / ".lock"
    with pytest.raises(RuntimeError), FileLock(lock):
        raise RuntimeError("build failed")
    with FileLock(lock, timeout_s=0.1):
        pass
