"""The composed service: the agent plus the notifier, end to end with a real local webhook receiver."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mediqa.agent.config import config_from_dict
from mediqa.agent.runtime import Runtime
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer


class _Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _run_once(tmp_path, port: int) -> list:
    cfg = config_from_dict({
        "state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"}, "dicom": {"output": {"sr": False}},
        "completion": {"quiet_period_s": {"default": 0.5, "CT": 0.5}}, "watch": {"file_stable_s": 0.0},
        "notify": {"destinations": [f"json://127.0.0.1:{port}/hook"], "backoff_s": 0.2}})
    with _running(Runtime(cfg, ClassicalScorer(), tmp_path / "export", sinks=[])):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _Receiver.posts:
            time.sleep(0.1)
        time.sleep(1.0)  # anything duplicated would arrive now
    return list(_Receiver.posts)


@contextmanager
def _running(runtime: Runtime) -> Iterator[Runtime]:
    """The runtime's loop in a thread, stopped and closed on the way out."""
    stop = threading.Event()
    loop = threading.Thread(target=runtime.run, args=(stop,))
    loop.start()
    try:
        yield runtime
    finally:
        stop.set()
        loop.join(30)
        runtime.close()


@pytest.mark.slow
def test_one_notification_per_retake_across_a_restart(tmp_path):
    write_phantom_ct(tmp_path / "export" / "clean", noise_hu=4.0, seed=0, slices=6, size=96)
    write_phantom_ct(tmp_path / "export" / "noisy", noise_hu=60.0, seed=1, slices=6, size=96)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.posts = []
    try:
        first = _run_once(tmp_path, server.server_address[1])
        assert len(first) == 1 and "RETAKE" in json.dumps(first[0])  # the noisy series only
        assert _run_once(tmp_path, server.server_address[1]) == first  # a restart sends nothing again
    finally:
        server.shutdown()
        server.server_close()


def test_the_memory_release_waits_for_sheets_and_reports(tmp_path):
    """The runtime tells the loop about the work it does after the results (see ``Agent.background``)."""
    cfg = config_from_dict({"state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"},
                            "console": {"listen": "off"}})
    (tmp_path / "export").mkdir()
    with _running(Runtime(cfg, ClassicalScorer(), tmp_path / "export", sinks=[])) as runtime:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(runtime.agent.background) < 2:
            time.sleep(0.05)
        assert runtime.sheets is not None and runtime.outbox is not None
        assert runtime.agent.background == [runtime.sheets.pending, runtime.outbox.pending]
        assert not runtime.agent._background_busy()
