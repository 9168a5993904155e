"""Fixtures of the fault tests: good generated files to poison, a memory cap, and a tree deeper than recursion."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.path.dirname(__file__) not in sys.path:  # the generator module beside the tests (any import mode)
    sys.path.insert(0, os.path.dirname(__file__))

from poison import DEEP, good_ct, good_enhanced_mr, make_deep_tree, remove_tree


@pytest.fixture
def ct_files(tmp_path: Path) -> list[Path]:
    return good_ct(tmp_path / "good_ct")


@pytest.fixture
def enhanced_file(tmp_path: Path) -> Path:
    return good_enhanced_mr(tmp_path / "good_emr")


@pytest.fixture
def memory_cap() -> Iterator[None]:
    """Cap this process's address space at its current size + 1.5 GiB for one test (Linux).

    A poison that makes the reader allocate (2e9 frames -> a 16 GB tuple) then fails fast with
    MemoryError instead of taking the shared machine down with it.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not Linux
        yield
        return
    size = None
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    size = int(line.split()[1]) * 1024
    except OSError:
        pass
    if size is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + int(1.5 * 1024**3)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def deep_tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(export root, deepest folder): ``root/ok/`` holds a file, ``root/d/d/.../d`` is DEEP levels deep.

    Removed here without recursion: ``shutil.rmtree`` (and so pytest's own tmp cleanup, which only
    catches OSError) raises RecursionError on it, in a later session.
    """
    root = tmp_path / "export"
    (root / "ok").mkdir(parents=True)
    (root / "ok" / "1.dcm").write_bytes(b"x")
    deepest = make_deep_tree(root, DEEP)
    (deepest / "deep.dcm").write_bytes(b"x")
    try:
        yield root, deepest
    finally:
        for child in list(tmp_path.iterdir()):  # a test may have moved deep folders elsewhere in tmp_path
            remove_tree(child)
