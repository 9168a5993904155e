"""`mediqa watch` as a DICOM node, end to end: storescu sends, the agent scores, an SR lands in the state dir."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from dicom_peers import free_port, storescu, tool

from mediqa.agent.samples import write_phantom_ct

pytestmark = pytest.mark.slow


def test_series_sent_by_storescu_is_scored_and_reported_as_sr(tmp_path):
    tool("storescu")
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    write_phantom_ct(clean, noise_hu=4.0, seed=0, slices=8, size=96)
    write_phantom_ct(noisy, noise_hu=60.0, seed=1, slices=8, size=96)
    export, state, port = tmp_path / "export", tmp_path / "state", free_port()
    export.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mediqa.cli.main", "watch", "--folder", str(export),
                             "--state-dir", str(state), "--scorer", "classical",
                             "--set", f"dicom.node.listen=127.0.0.1:{port}",
                             "--set", "dicom.node.allowed_calling_aes=[CT01]",
                             "--set", "completion.quiet_period_s.default=1", "--set", "completion.quiet_period_s.CT=1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while storescu(port, sorted(clean.iterdir())).returncode != 0:  # the node is up once it stores
            assert time.monotonic() < deadline and proc.poll() is None, "the DICOM node never came up"
            time.sleep(0.5)
        assert storescu(port, sorted(noisy.iterdir())).returncode == 0
        assert storescu(port, sorted(noisy.iterdir()), aet="STRANGER").returncode != 0  # not on the allow-list
        results: list[dict] = []
        while time.monotonic() < deadline + 60 and len(results) < 2:
            time.sleep(0.3)
            path = state / "results.jsonl"
            results = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        assert sorted(r["decision"] for r in results) == ["ok", "retake"]
        srs: list = []
        while time.monotonic() < deadline + 90 and len(srs) < 2:
            time.sleep(0.3)
            srs = list((state / "sr").glob("*.dcm")) if (state / "sr").is_dir() else []
        assert len(srs) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
