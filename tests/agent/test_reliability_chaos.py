"""Chaos: a writer replays ~30 generated series into the export folder while ``mediqa watch`` runs in a
subprocess and is killed with SIGKILL at random moments (12 times or more) and restarted. At the end
every series has exactly one live result, nothing is lost, results.jsonl holds each uuid once and every
live result, and no series was ever reported on fewer images than it finally had.

The writer writes each series' files back to back (well inside the 1 s quiet period), some in two
parts, some preallocated (full size of zeros first, the content a moment later), so a late instance
after the quiet period cannot happen. Seeded randomness; bounded time (about a minute on two cores).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_reliability_support import SIZE, jsonl, series_uid

from mediqa.agent.report.store import ResultStore
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.state.db import StateDB

SERIES = 30
KILLS = 12
QUIET_S = 1.0
pytestmark = pytest.mark.slow


def _watch(export: Path, state: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mediqa.cli.main", "watch", "--folder", str(export), "--state-dir", str(state),
           "--scorer", "classical", "--set", f"completion.quiet_period_s.default={QUIET_S}",
           "--set", f"completion.quiet_period_s.CT={QUIET_S}", "--set", "watch.file_stable_s=0.3",
           "--set", "watch.reconcile_interval_s=5", "--set", "report.color=never", *extra]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


class Writer(threading.Thread):
    """Copies each source series into the export folder, file after file, with a pause between series."""

    def __init__(self, sources: list[Path], export: Path, rng: random.Random) -> None:
        super().__init__(name="chaos-writer")
        self.sources, self.export, self.rng = sources, export, rng
        self.spans: dict[str, float] = {}  # series folder -> seconds from its first to its last file
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for src in self.sources:
                time.sleep(self.rng.uniform(0.1, 1.2))
                dest = self.export / src.name
                dest.mkdir(parents=True)
                began = time.monotonic()
                for f in sorted(src.iterdir()):
                    self._write(f.read_bytes(), dest / f.name, self.rng.random())
                self.spans[src.name] = time.monotonic() - began
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    @staticmethod
    def _write(data: bytes, target: Path, how: float) -> None:
        with open(target, "wb") as fh:
            if how < 0.2:  # preallocated: full size first, content a moment later
                fh.truncate(len(data))
                fh.flush()
                time.sleep(0.01)
                fh.seek(0)
                fh.write(data)
            elif how < 0.5:  # in two parts
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(0.005)
                fh.write(data[len(data) // 2:])
            else:
                fh.write(data)


def test_kills_at_random_moments_lose_nothing_and_repeat_nothing(tmp_path):
    rng = random.Random(20240611)
    export, state, log = tmp_path / "export", tmp_path / "state", tmp_path / "agent.log"
    export.mkdir()
    sources, noisy = [], set()
    for i in range(SERIES):
        src = tmp_path / "src" / f"s{i:02d}"
        loud = rng.random() < 0.3
        write_phantom_ct(src, noise_hu=60.0 if loud else 5.0, seed=i, slices=rng.randint(8, 20), size=SIZE)
        sources.append(src)
        if loud:
            noisy.add(series_uid(next(src.iterdir())))
    expected = {series_uid(next(s.iterdir())): len(list(s.iterdir())) for s in sources}

    writer = Writer(sources, export, rng)
    kills = 0
    proc = _watch(export, state, log)
    writer.start()
    try:
        while kills < KILLS or writer.is_alive():
            time.sleep(rng.uniform(0.8, 4.5))  # often long enough to start (1.5 s) and work
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            proc = _watch(export, state, log)
        writer.join()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        final = _watch(export, state, log, "--exit-when-idle", "3")
        final.wait(timeout=120)
        assert final.returncode == 0, log.read_text()[-3000:]
    finally:
        for p in (proc, locals().get("final")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        writer.join(timeout=60)
    assert writer.error is None
    assert kills >= KILLS
    assert max(writer.spans.values()) < QUIET_S / 2, writer.spans  # no instance can arrive late

    with StateDB.open(state / "state.sqlite") as db:
        store = ResultStore(db, state / "results.jsonl")
        live = store.live()
        history = store.history()
    lines = jsonl(state)
    # Every series has exactly one live result, on all of its images.
    per_series = collections.Counter(r["series_uid"] for r in live)
    assert set(per_series) == set(expected) and set(per_series.values()) == {1}
    assert {r["series_uid"]: r["instances"] for r in live} == expected
    assert {r["series_uid"] for r in live if r["decision"] == "retake"} == noisy
    # results.jsonl: each uuid once, every result of the history (and so every live one) in it.
    uuids = [x["uuid"] for x in lines]
    assert len(uuids) == len(set(uuids))
    assert {h["uuid"] for h in history if h["origin"] != "rescored"} == set(uuids)
    assert {r["uuid"] for r in live} <= set(uuids)
    # Never shown on fewer images than the series finally had.
    short = [(x["series_uid"], x["instances"]) for x in lines if x["instances"] != expected[x["series_uid"]]]
    assert short == []
    console = [line for line in log.read_text(errors="replace").splitlines() if " sl  score " in line]
    assert len(console) >= SERIES
    assert os.path.getsize(state / "results.jsonl") > 0
