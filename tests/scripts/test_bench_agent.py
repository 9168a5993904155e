"""The benchmark's own logic that decides what it measures (scripts/bench_agent.py)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench_agent")


def _agent_with_cpu(bench: ModuleType, tmp_path: Path, increments: list[float]) -> object:
    """An AgentProcess whose process tree used ``increments`` CPU seconds in its successive windows."""
    agent = bench.AgentProcess(tmp_path / "export", tmp_path / "state")
    totals = iter([0.0] + [sum(increments[: i + 1]) for i in range(len(increments))])
    agent.tree_cpu_s = lambda: next(totals)  # type: ignore[method-assign]
    agent.check = lambda: None  # type: ignore[method-assign]
    return agent


def test_wait_idle_waits_past_a_lull_for_quiet_windows_in_a_row(bench: ModuleType, tmp_path: Path) -> None:
    seen: list[float] = []
    agent = _agent_with_cpu(bench, tmp_path, [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    inner = agent.tree_cpu_s  # type: ignore[attr-defined]

    def counting() -> float:
        value = inner()
        seen.append(value)
        return value

    agent.tree_cpu_s = counting  # type: ignore[attr-defined]
    # busy, a lull of one window (the results done, the reports made after them not started), busy again
    # (the reports), then quiet: one quiet window read as idle before the memory release (2026-12-02)
    waited = agent.wait_idle(timeout_s=5.0, window_s=0.01, share=0.05)  # type: ignore[attr-defined]
    assert waited == waited  # not the timeout's NaN
    assert len(seen) == 7  # the first reading, then one per window: busy, lull, busy, quiet, quiet, quiet


def test_generated_slices_are_distinct_copies_of_their_templates(bench: ModuleType, tmp_path: Path) -> None:
    """The bench's series reuse 40 real slices; each copy must still be a slice of its own, or the agent's
    store of model outputs (reused for identical inputs) would score the copies for free."""
    import numpy as np
    import pydicom

    if not bench.CT_SOURCE.exists():
        pytest.skip(f"needs the shared data ({bench.CT_SOURCE})")
    files = bench.build_series(bench.CT_SOURCE, tmp_path / "a", 41)
    first, again = pydicom.dcmread(files[0]), pydicom.dcmread(files[40])  # the same template
    a, b = first.pixel_array.astype(np.int64), again.pixel_array.astype(np.int64)
    assert np.any(a != b) and np.abs(a - b).max() == 1 and np.mean(a != b) < 0.05
    bench._clone(tmp_path / "a", tmp_path / "b")
    clone = pydicom.dcmread(tmp_path / "b" / files[0].name)
    assert np.any(clone.pixel_array != first.pixel_array)


def test_each_run_and_each_generated_series_start_from_a_settled_disk(bench: ModuleType, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's own writes (a generated source series, the runs before) are written back before a run
    measures: their write-back landed in the next runs' windows and slowed the writer there (unflushed, CT 300
    at once 1.42x alone and 2.04x after the index runs, 2026-12-03). ``--no-settle`` (SETTLE off) measures
    without it."""
    if not bench.CT_SOURCE.exists():
        pytest.skip(f"needs the shared data ({bench.CT_SOURCE})")
    synced: list[str] = []
    monkeypatch.setattr(bench.os, "sync", lambda: synced.append("sync"))
    monkeypatch.setattr(bench, "SETTLE", [True])
    runs: list[int] = []

    def run(root: Path) -> dict[str, float]:
        runs.append(len(synced))  # what had been flushed when the run began
        bench.build_series(bench.CT_SOURCE, root / "src", 2)
        return {"x": float(len(synced))}

    assert bench._repeat(2, run) == {"x": 3.0}  # median of 2 and 4: each build was flushed before it returned
    assert runs == [1, 3]  # and each run began after a flush
    monkeypatch.setattr(bench, "SETTLE", [False])
    synced.clear()
    bench._repeat(1, run)
    assert synced == []
