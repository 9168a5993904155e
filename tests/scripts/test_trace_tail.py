"""The tail tracer's hook (scripts/trace_tail.py): it traces the agent process only, and reports what ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from script_loader import load_script

CALL = "from mediqa.agent.pipeline import split_for_scoring; split_for_scoring((), ())"


@pytest.fixture(scope="module")
def trace() -> ModuleType:
    return load_script("trace_tail")


def _run_with_hook(trace: ModuleType, tmp_path: Path, *argv: str) -> str:
    hook = tmp_path / "hook"
    hook.mkdir(parents=True)
    (hook / "sitecustomize.py").write_text(f"TRACED = {trace.TRACED!r}\n{trace.HOOK}", encoding="utf-8")
    out = tmp_path / "trace.txt"
    env = {**os.environ, "MEDIQA_TRACE": str(out), "PYTHONPATH": str(hook)}
    subprocess.run([sys.executable, "-c", CALL, *argv], env=env, check=True, timeout=120)
    return out.read_text(encoding="utf-8") if out.exists() else ""


@pytest.mark.slow
def test_the_hook_traces_a_process_started_as_watch_and_no_other(trace: ModuleType, tmp_path: Path) -> None:
    traced = _run_with_hook(trace, tmp_path, "watch")
    start, end, cpu, label, thread = traced.splitlines()[0].split(" ", 4)
    assert label == "split_for_scoring" and thread == "MainThread"
    assert float(end) >= float(start) and float(cpu) >= 0.0
    assert _run_with_hook(trace, tmp_path / "other", "score") == ""


def test_the_report_lists_the_phases_of_the_tail_beside_the_floor(trace: ModuleType) -> None:
    spans = [(0.0002, 0.0003, 0.0001, "IntakeJob._index_ready"), (0.010, 0.110, 0.100, "OrtBackend._infer")]
    text = trace.report({"latency_s": 0.2, "floor_s": 0.1}, spans)
    assert "last file -> result 200 ms" in text and "100 ms; ratio 2.00" in text
    assert "OrtBackend._infer" in text
    assert "_index_ready" not in text  # under half a millisecond: the idle loop's noise
