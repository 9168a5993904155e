#!/usr/bin/env python3
"""Benchmark of the technologist's console in headless chromium (not a test: figures depend on the machine).

Measures, on a real console (127.0.0.1, a real state database filled by the real ResultStore) and Debian's
chromium driven by Playwright:
  - commit -> card: from a result's commit to its card in the page (goal <= 0.5 s), woken by the agent's
    ``notify()`` (in-process console) and by polling alone (a console in its own process);
  - page load: navigation start to the load event, and to the first card drawn (goal <= 300 ms);
  - replay: 50 results committed back to back all appear, none twice.
Prints a table with the goals beside the figures and the load average (``make bench`` runs it after
bench_agent.py; it skips with a message where chromium or playwright is missing). ``--screenshot
docs/console.png`` also saves the live view.

    .venv/bin/python scripts/bench_console.py [--results 50] [--screenshot docs/console.png]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.pipeline import analyse_series, unscored_result
from mediqa.agent.report.feedback import record_feedback
from mediqa.agent.report.sheets import write_sheet
from mediqa.agent.report.store import ResultStore
from mediqa.agent.report.web import AgentStatus, ConsoleConfig, ConsoleServer, start_console
from mediqa.agent.report.web.events import BACKLOG
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.base import SeriesResult
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.state.db import StateDB, open_state

CHROMIUM = "/usr/bin/chromium"
ARRIVALS = """() => { window.arrived = {}; new MutationObserver(() => {
  document.querySelectorAll('.card').forEach(c => { if (!(c.dataset.id in window.arrived))
    window.arrived[c.dataset.id] = Date.now(); }); }).observe(document.getElementById('cards'),
  {childList: true}); }"""


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db: StateDB = open_state(root / "state")
        self.store = ResultStore(self.db, root / "state" / "results.jsonl")
        config = config_from_dict({"state_dir": str(root / "state"), "scoring": {"scorer": "classical"}})
        self.series: dict[str, tuple[Any, SeriesResult]] = {}
        for name, noise, seed in (("ok", 4.0, 0), ("retake", 60.0, 1)):
            write_phantom_ct(root / name, noise_hu=noise, seed=seed, slices=8, size=96)
            (records,) = scan_tree(root / name).values()
            analysis = analyse_series(records, ClassicalScorer(), config)
            self.series[name] = (analysis.layout, analysis.result)
        self.n = 0

    def commit(self, name: str, sheet: bool = False, **changes: Any) -> tuple[int, float]:
        """Commit a result as a new series; returns (row id, commit time in epoch seconds)."""
        layout, result = self.series[name]
        self.n += 1
        result = dataclasses.replace(result, series_uid=f"{result.series_uid}.{self.n}", series_key=f"s-b{self.n:05d}",
                                     series_number=self.n, **changes)
        with self.db.transaction() as conn:
            saved = self.store.add(conn, result, 0)
        committed = time.time()
        if sheet:
            write_sheet(self.root / "state", saved.result_id, layout, result)
        return saved.result_id, committed


def _console(bench: Bench, poll_s: float, status: AgentStatus | None = None) -> ConsoleServer:
    server = start_console(ConsoleConfig(listen="127.0.0.1:0"), bench.root / "state", db=lambda: bench.db,
                           poll_s=poll_s, status=(lambda: status) if status else None)
    assert server is not None
    return server


def commit_to_card(page: Any, bench: Bench, server: ConsoleServer, n: int, notify: bool) -> list[float]:
    page.goto(server.url)
    page.wait_for_load_state("load")
    page.evaluate(ARRIVALS)
    delays = []
    for i in range(n):
        rid, committed = bench.commit("retake" if i % 4 == 0 else "ok")
        if notify:
            server.notify(rid)
        page.wait_for_selector(f'.card[data-id="{rid}"]', timeout=10_000)
        arrived = page.evaluate(f"() => window.arrived['{rid}']")
        delays.append(arrived / 1000.0 - committed)
        time.sleep(0.15)  # results of a scanner come seconds apart; do not measure a burst here
    return delays


def page_load(page: Any, server: ConsoleServer, n: int) -> tuple[list[float], list[float]]:
    loads, first = [], []
    page.goto(server.url)  # the first load of a new browser page is not what a technologist waits for
    page.wait_for_selector(".card")
    for _ in range(n):
        page.goto(server.url)
        page.wait_for_selector(".card")
        timing = page.evaluate("() => { const t = performance.getEntriesByType('navigation')[0];"
                               " return [t.loadEventEnd, performance.now()]; }")
        loads.append(timing[0] / 1000.0)
        first.append(page.evaluate("() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
                                   " ?? 0") / 1000.0)
    return loads, first


def replay(page: Any, bench: Bench, server: ConsoleServer, n: int) -> tuple[int, int, int, float]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(server.url)
    # The page draws the newest live results from its event stream after the load event: counting cards at
    # "load" raced that backlog (a count of before + n was then reached by old cards, and new ones read as lost).
    # So wait for the backlog, then for every new id by name.
    backlog = min(bench.n, BACKLOG)
    page.wait_for_function(f"() => document.querySelectorAll('.card').length >= {backlog}", timeout=30_000)
    started = time.monotonic()
    ids = [bench.commit("ok" if i % 5 else "retake")[0] for i in range(n)]
    server.notify()
    with contextlib.suppress(PlaywrightTimeout):  # what did not arrive is counted below as not shown
        page.wait_for_function(f"() => {ids}.every(id => document.querySelector('.card[data-id=\"' + id + '\"]'))",
                               timeout=30_000)
    took = time.monotonic() - started
    shown = page.eval_on_selector_all(".card", "cs => cs.map(c => Number(c.dataset.id))")
    return len(set(ids) & set(shown)), len(shown) - len(set(shown)), n, took


def screenshot(browser: Any, path: Path) -> None:
    """The live view for the README: a retake, an unscored series, a few checked ones, an answered alert."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            status = AgentStatus(folder="export", backend="onnxruntime-cpu", scorer="learned",
                                 last_file_at=time.time() - 4, queue=0)
            server = _console(bench, 0.25, status)
            try:
                for i in range(3):
                    bench.commit("ok", series_description=("t1_axial", "Head 5mm", "Thorax 1mm")[i])
                answered, _ = bench.commit("retake", sheet=True, series_description="Abdomen portal")
                record_feedback(bench.db, answered, "rescanned", initials="MK")
                layout, _ = bench.series["ok"]
                unscored = unscored_result([], ["no image could be read: unreadable (3 files)"],
                                           series_uid="9.9", series_key="s-unscored", modality="MR")
                with bench.db.transaction() as conn:
                    bench.store.add(conn, dataclasses.replace(unscored, series_number=7,
                                                              series_description="DWI b1000"), 0)
                bench.commit("retake", sheet=True, series_description="Head 5mm (repeat)")
                context = browser.new_context(viewport={"width": 1000, "height": 860})
                page = context.new_page()
                page.goto(server.url)
                page.wait_for_function("() => { const i = document.querySelector('.card-retake img.thumb');"
                                       " return i && i.complete && i.naturalWidth > 0; }")
                page.screenshot(path=str(path), type="png")
                context.close()
            finally:
                server.stop()
        finally:
            bench.db.close()
    print(f"screenshot: {path} ({path.stat().st_size / 1024:.0f} KB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=int, default=50, help="results replayed back to back")
    ap.add_argument("--samples", type=int, default=20, help="results timed one by one, and page loads")
    ap.add_argument("--screenshot", type=Path, help="also save the live view here (PNG)")
    args = ap.parse_args(argv)
    import importlib.util

    missing = ("the playwright package (pip install -e .[dev])" if importlib.util.find_spec("playwright") is None
               else "chromium (make system-deps)" if not os.path.exists(CHROMIUM) else "")
    if missing:  # `make bench` goes on: the agent's figures stand without the console's
        print(f"console benchmark skipped: {missing} is not installed", file=sys.stderr)
        return 0
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        bench = Bench(Path(tmp))
        page = browser.new_page()
        rows = []
        for label, notify in (("commit -> card, notify()", True), ("commit -> card, polling only", False)):
            server = _console(bench, 0.25)
            try:
                rows.append(_timed(label, commit_to_card(page, bench, server, args.samples, notify), 0.5))
            finally:
                server.stop()
        server = _console(bench, 0.25)
        try:
            loads, first = page_load(page, server, args.samples)
            rows.append(_timed("page load (load event)", loads, 0.3))
            rows.append(_timed("first contentful paint", first, None))
            shown, twice, n, took = replay(page, bench, server, args.results)
            rows.append((f"replay {n} results", f"{shown}/{n} shown", f"{twice} twice", "", "all, once",
                         f"ok in {took:.2f} s" if shown == n and not twice else "LOST"))
        finally:
            server.stop()
        bench.db.close()
        if args.screenshot:
            screenshot(browser, args.screenshot)
        browser.close()
    load = os.getloadavg()
    print(f"\nconsole benchmark, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("(verdict on the median; p90 and max show how a busy machine stretches it)")
    print(f"{'measure':<30} {'median':>12} {'p90':>12} {'max':>10} {'goal':>10}  verdict")
    for label, med, p90, worst, goal, verdict in rows:
        print(f"{label:<30} {med:>12} {p90:>12} {worst:>10} {goal:>10}  {verdict}")
    return 0 if all(r[5].startswith("ok") or not r[5] for r in rows) else 1


def _timed(label: str, seconds: list[float], goal: float | None) -> tuple[str, str, str, str, str, str]:
    ms = sorted(s * 1000 for s in seconds)
    med, p90 = statistics.median(ms), ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    verdict = "" if goal is None else ("ok" if med <= goal * 1000 else "SLOW")
    return (label, f"{med:.0f} ms", f"{p90:.0f} ms", f"{ms[-1]:.0f} ms",
            "" if goal is None else f"<= {goal * 1000:.0f} ms", verdict)


if __name__ == "__main__":
    raise SystemExit(main())
