"""Helpers of the CLI tests: a state dir holding one retake alert, running as another user."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.select.selection import Selection

OTHER_UID = 65534  # nobody: the "admin" who is not the service user


def retake_result(uid: str = "1.2.3.4", description: str = "T2 AX") -> SeriesResult:
    return SeriesResult(
        series_uid=uid, series_key="s-test", modality="MR", series_number=3, series_description=description,
        n_instances=20, n_slices=20, score=1.2, decision="retake", reasons=("score 1.20 < 2.00",), worst=None,
        slice_scores=(1.2,), selection=Selection(indices=(0,), weights=(1.0,)), prompt={}, measures={},
        scorer="classical", backend="numpy", threshold={"retake_below": 2.0}, processing_ms=1.0)


def make_state(state_dir: Path, result: SeriesResult | None = None) -> int:
    """A state dir as the agent leaves it, with one live result; returns its id."""
    from mediqa.agent.report.store import ResultStore
    from mediqa.agent.state.db import open_state

    db = open_state(state_dir)
    try:
        store = ResultStore(db, state_dir / "results.jsonl")
        with db.transaction() as conn:
            saved = store.add(conn, result or retake_result(), 0)
        store.flush_jsonl()
    finally:
        db.close()
    return saved.result_id


@functools.cache
def _other_user_cannot_import() -> str:
    """Why nobody cannot run this checkout's ``mediqa`` (e.g. a clone inside a ``mktemp -d`` folder, mode
    0700), or "" when it can: then the permission tests would test the checkout's place, not the agent."""
    probe = subprocess.run(["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups",
                            sys.executable, "-c", "import mediqa.cli.main"], capture_output=True, text=True,
                           timeout=120, cwd="/")
    if probe.returncode == 0:
        return ""
    return (f"uid {OTHER_UID} (nobody) cannot import this checkout's mediqa ({probe.stderr.strip().splitlines()[-1]}): "
            "a folder above it is not readable by others; chmod o+rx it to run the permission tests")


def run_as_other_user(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``mediqa ARGV`` as a user who does not own the state (as root: nobody, via setpriv; else ourselves).

    Without root the caller makes the paths unreadable with chmod instead, which the owner is subject to.
    """
    cmd = [sys.executable, "-m", "mediqa.cli.main", *argv]
    env = {k: v for k, v in os.environ.items() if k != "MEDIQA_CONFIG"}
    env["HOME"] = str(cwd)  # nobody's own home does not exist
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot act as another user")
        if why := _other_user_cannot_import():
            pytest.skip(why)
        cmd = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def restrict(path: Path, mode: int) -> None:
    """Give ``path`` ``mode`` as seen by the other user of ``run_as_other_user``.

    As root the path stays root's and the other user (nobody) gets the "other" bits of ``mode``; without
    root the test's own user is that other user, so every class of bits becomes the "other" bits.
    """
    if os.geteuid() != 0:
        other = mode & 0o7
        mode = other | other << 3 | other << 6
    path.chmod(mode)


def one_line(text: str) -> bool:
    return text.count("\n") == 1 and "Traceback" not in text
