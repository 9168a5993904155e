"""Helpers of the console's tests (a module of its own: every test folder has a ``conftest``, so tests
import these by this name): a state dir with real results, a console on loopback, one HTTP request."""

from __future__ import annotations

import dataclasses
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mediqa.agent.dicom.volume import SeriesLayout
from mediqa.agent.report.sheets import sheet_path
from mediqa.agent.report.store import ResultStore
from mediqa.agent.report.web import ConsoleConfig, ConsoleServer, start_console
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.state.db import StateDB, open_state

CHROMIUM = Path("/usr/bin/chromium")
SHEETS: dict[str, bytes] = {}  # series uid -> its contact sheet, drawn once per session (drawing takes ~0.5 s)


class State:
    """A state dir with the agent's real database and result store, and a way to add results."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: StateDB = open_state(path)
        self.store = ResultStore(self.db, path / "results.jsonl")
        self._n = 0

    def add(self, layout: SeriesLayout, result: SeriesResult, *, sheet: bool = True, new_series: bool = True,
            **changes: Any) -> int:
        """Commit ``result`` (as a new series unless told otherwise) with its sheet; returns its row id."""
        self._n += 1
        base = result.series_uid
        if new_series:
            changes.setdefault("series_uid", f"{result.series_uid}.{self._n}")
            changes.setdefault("series_key", f"s-test{self._n:04d}")
            changes.setdefault("series_number", (result.series_number or 0) * 100 + self._n)
        result = dataclasses.replace(result, **changes)
        with self.db.transaction() as conn:
            saved = self.store.add(conn, result, 0)
        if sheet:  # the phantom's sheet, drawn once (``write_sheet`` itself is tested in test_sheets.py)
            path = sheet_path(self.path, saved.result_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(SHEETS[base])
        return saved.result_id

    def close(self) -> None:
        self.db.close()


def launch(state: State, **kw: Any) -> ConsoleServer:
    cfg = kw.pop("cfg", ConsoleConfig(listen="127.0.0.1:0"))
    server = start_console(cfg, state.path, db=lambda: state.db, heartbeat_s=kw.pop("heartbeat_s", 1.0), **kw)
    assert server is not None
    return server


def request(server: ConsoleServer, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to the console over loopback (bounded in time)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        hdrs = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
        if isinstance(body, (dict, list)):
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def warm_up(browser: Any, folder: Path) -> None:
    """Playwright runs file writes (screenshots) on its event loop's default executor, which starts threads
    on demand, up to six: a test that happens to need one more would look like it leaked a thread. One
    executor thread, started here once per session, keeps the per-test thread-leak guard exact."""
    loop = getattr(browser, "_loop", None)  # the sync API's loop (a private attribute, stable since 1.x)
    if loop is not None:
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix="asyncio-playwright"))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content("<p>warm-up</p>")
        page.screenshot(path=str(folder / "warm-up.png"))
    finally:
        context.close()
