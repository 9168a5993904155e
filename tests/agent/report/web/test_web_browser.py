"""The console in a real browser: Debian's headless chromium driven by Playwright (no browser download).

Skipped with the reason when chromium or the playwright package is missing (CI installs both:
``apt-get install -y chromium``, ``pip install playwright``). Screenshots of the live and the detail view
are saved under ``$MEDIQA_ARTEFACTS`` (else the test's tmp_path).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from web_support import launch

from mediqa.agent.report.feedback import feedback_for
from mediqa.agent.report.web import AgentStatus, ConsoleConfig, routes


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    yield pg
    context.close()


def _card(page, rid):
    return page.wait_for_selector(f'.card[data-id="{rid}"]')


@pytest.mark.slow
def test_a_retake_card_appears_with_its_reason_and_thumbnail(state, console, phantoms, page, artefacts):
    ok = state.add(*phantoms["ok"])
    page.goto(console.url)
    _card(page, ok)
    assert "CHECKED" in page.inner_text(f'.card[data-id="{ok}"]').upper()
    page.click("#sound")  # one click turns the beep on (WebAudio, no file)
    assert page.get_attribute("#sound", "aria-pressed") == "true"
    bad = state.add(*phantoms["retake"])
    console.notify(bad)
    card = page.wait_for_selector(f'.card-retake[data-id="{bad}"]', timeout=5000)
    text = card.inner_text()
    for words in ("RETAKE SUGGESTED", "image noise 60.", "Where: slice 1 of 8 at 0 mm", "0.00 of 4",
                  "retake below 2.00", "Latency", "#3"):
        assert words in text, words
    page.wait_for_function("() => { const i = document.querySelector('.card-retake img.thumb');"
                           " return i && i.complete && i.naturalWidth === 224; }")
    ids = page.eval_on_selector_all(".card", "cards => cards.map(c => Number(c.dataset.id))")
    assert ids == [bad, ok]  # newest first
    size = page.eval_on_selector(".card-retake .verdict", "e => parseFloat(getComputedStyle(e).fontSize)")
    colour = page.eval_on_selector(".card-retake .verdict", "e => getComputedStyle(e).backgroundColor")
    assert size >= 28 and colour == "rgb(179, 0, 27)"  # large type, red, and the words
    page.wait_for_function("() => document.getElementById('s-last').textContent !== '-'")
    page.screenshot(path=str(artefacts / "console-live.png"), full_page=True)
    assert page.errors == []


@pytest.mark.slow
def test_acknowledging_in_the_page_records_the_feedback(state, console, phantoms, page):
    bad = state.add(*phantoms["retake"])
    ok = state.add(*phantoms["ok"])
    page.goto(console.url)
    card = f'.card[data-id="{bad}"]'
    _card(page, bad)
    page.fill(f"{card} input[name=initials]", "AB")
    page.fill(f"{card} input[name=note]", "patient moved, rescanned later")
    page.click(f"{card} button[value=false_alert]")
    page.wait_for_selector(f"{card} .given li")
    assert "false alert by AB" in page.inner_text(card)
    assert page.query_selector(f"{card} button[value=rescanned]") is None  # answered: the buttons go
    (fb,) = feedback_for(state.db, [bad])[bad]
    assert (fb.kind, fb.initials, fb.note) == ("false_alert", "AB", "patient moved, rescanned later")
    okcard = f'.card[data-id="{ok}"]'
    page.click(f"{okcard} summary")
    page.click(f"{okcard} button[value=should_have_alerted]")
    page.wait_for_selector(f"{okcard} .given li")
    assert feedback_for(state.db, [ok])[ok][0].kind == "should_have_alerted"
    page.goto(console.url + "history?feedback=false_alert")
    rows = page.inner_text(".history-table tbody")
    assert "false alert (AB)" in rows and str(ok) not in page.eval_on_selector_all(
        ".history-table tbody a", "links => links.map(a => a.textContent).join(' ')")
    assert page.errors == []


@pytest.mark.slow
def test_a_restart_while_the_page_is_open_loses_no_card(state, phantoms, page):
    server = launch(state, heartbeat_s=0.5)
    port = server.port
    ids = [state.add(*phantoms["ok"])]
    page.goto(server.url)
    _card(page, ids[0])
    server.stop()  # the agent (and its console) killed while the page stays open
    page.wait_for_selector("#banner:not([hidden])")
    assert "Lost contact with the agent" in page.inner_text("#banner")
    for name in ("retake", "ok", "retake"):  # results committed while the console is down
        ids.append(state.add(*phantoms[name]))
    again = launch(state, cfg=ConsoleConfig(listen=f"127.0.0.1:{port}"), heartbeat_s=0.5)
    try:
        page.wait_for_function(f"() => document.querySelectorAll('.card').length === {len(ids)}", timeout=20_000)
        ids.append(state.add(*phantoms["ok"]))
        again.notify(ids[-1])
        page.wait_for_function(f"() => document.querySelectorAll('.card').length === {len(ids)}")
        shown = page.eval_on_selector_all(".card", "cards => cards.map(c => Number(c.dataset.id))")
        assert shown == sorted(ids, reverse=True)  # every card, once, newest first
        assert page.evaluate("() => window.mediqaConsole.seen.size") == len(ids)
        page.wait_for_selector("#banner", state="hidden")
    finally:
        again.stop()
    assert page.errors == []


@pytest.mark.slow  # waits for a card to age out (a few seconds)
def test_a_card_leaves_the_open_page_when_older_than_the_max_age(state, phantoms, page):
    server = launch(state, heartbeat_s=0.5, live_max_age_s=8.0)
    try:
        bad = state.add(*phantoms["retake"])
        page.goto(server.url)
        _card(page, bad)
        page.wait_for_selector(f'.card[data-id="{bad}"]', state="detached", timeout=20_000)  # nobody answered it
        assert page.is_visible("#empty") and "History" in page.inner_text("#empty")
        page.reload()  # nor does a new page show it
        ok = state.add(*phantoms["ok"])
        server.notify(ok)
        _card(page, ok)  # the stream sends its backlog first: an old card would be there by now
        assert page.eval_on_selector_all(".card", "cards => cards.map(c => Number(c.dataset.id))") == [ok]
        page.goto(server.url + "history")
        links = page.eval_on_selector_all(".history-table tbody a", "links => links.map(a => a.href).join(' ')")
        assert f"/series/{bad}" in links  # it stays in history
    finally:
        server.stop()
    assert page.errors == []


class _Evil(BaseHTTPRequestHandler):
    """A page on another origin that posts feedback to the console (even knowing its CSRF token)."""

    target = ""
    csrf = ""
    rid = 0

    def do_GET(self) -> None:
        body = (f'<form id="f" method="post" action="{self.target}api/feedback">'
                f'<input name="csrf" value="{self.csrf}"><input name="result_id" value="{self.rid}">'
                '<input name="kind" value="false_alert"></form><script>'
                f'fetch("{self.target}api/feedback", {{method: "POST", mode: "no-cors", credentials: "include",'
                f' body: "csrf={self.csrf}&result_id={self.rid}&kind=false_alert",'
                ' headers: {"Content-Type": "application/x-www-form-urlencoded"}})'
                '.finally(() => document.getElementById("f").submit());</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.mark.slow
def test_a_cross_site_page_cannot_post_feedback(state, console, phantoms, page):
    rid = state.add(*phantoms["retake"])
    handler = type("Evil", (_Evil,), {"target": console.url, "csrf": console.app.guard.csrf, "rid": rid})
    evil = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=evil.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        with page.expect_navigation(url=f"{console.url}api/feedback"):
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert "cross-site request refused" in page.content()
    finally:
        evil.shutdown()
        evil.server_close()
        thread.join(5)
    assert feedback_for(state.db, [rid]) == {}


@pytest.mark.slow
def test_the_detail_view_shows_sheet_scores_measures_and_takes_feedback(state, console, phantoms, page, artefacts):
    rid = state.add(*phantoms["retake"])
    page.goto(f"{console.url}series/{rid}")
    page.wait_for_function("() => { const i = document.querySelector('img.sheet');"
                           " return i && i.complete && i.naturalWidth > 600; }")
    assert page.eval_on_selector_all("table.slices tr.worst", "rows => rows.length") == 1
    measures = page.inner_text("table.measures")
    assert "Image noise" in measures and "HU" in measures and page.query_selector("svg.bar rect.fill")
    text = page.inner_text("main")
    for words in ("RETAKE SUGGESTED", "classical on numpy", "Rule", "default", "Prompt", "anatomy: head"):
        assert words in text, words
    page.screenshot(path=str(artefacts / "console-detail.png"), full_page=True)
    page.fill("input[name=initials]", "CD")
    with page.expect_navigation():
        page.click("button[value=rescanned]")
    assert "rescanned" in page.inner_text(".given") and feedback_for(state.db, [rid])[rid][0].initials == "CD"
    assert page.errors == []


@pytest.mark.slow
def test_the_token_once_in_the_address_then_the_cookie(state, phantoms, page):
    token = "k" * 24
    server = launch(state, cfg=ConsoleConfig(listen="127.0.0.1:0", token=token))
    try:
        rid = state.add(*phantoms["retake"])
        page.goto(server.url)
        assert "Access token needed" in page.inner_text("body")
        page.goto(f"{server.url}?token={token}")
        _card(page, rid)  # the stream works with the cookie alone
        assert "token" not in page.url
        started = time.monotonic()
        page.reload()
        _card(page, rid)
        assert time.monotonic() - started < 5
    finally:
        server.stop()


@pytest.mark.slow
def test_the_red_banner_says_when_the_agent_is_degraded_or_silent(state, phantoms, page, monkeypatch):
    reasons = ["the export folder cannot be read"]
    server = launch(state, heartbeat_s=0.5, status=lambda: AgentStatus(folder="export", backend="numpy",
                                                                       reasons=tuple(reasons), export_readable=False))
    try:
        page.goto(server.url)
        page.wait_for_selector("#banner:not([hidden])")
        assert "the export folder cannot be read" in page.inner_text("#banner")
        assert page.inner_text("#s-state") == "DEGRADED" and page.inner_text("#s-folder") == "export"
        reasons.clear()
        page.wait_for_selector("#banner", state="hidden")  # recovered: the next status clears it
        silent = threading.Event()

        def stall(app, write, last):  # a stream that stays open and says nothing (a hung agent)
            write(b"retry: 1000\n\n")
            silent.wait(10)

        monkeypatch.setattr(routes, "stream", stall)
        page.reload()
        page.wait_for_selector("#banner:not([hidden])", timeout=8_000)  # no word for 3 heartbeats
        assert "Lost contact with the agent" in page.inner_text("#banner")
        silent.set()
    finally:
        server.stop()


@pytest.mark.slow
def test_the_real_agent_feeds_the_console(tmp_path, page):
    """The wiring ``mediqa watch`` gets: the agent's loop in one thread, the console and the sheets in theirs."""
    from mediqa.agent.config import config_from_dict
    from mediqa.agent.report.metrics import AgentMetrics
    from mediqa.agent.report.sheets import SheetWriter
    from mediqa.agent.report.web import agent_status, start_console
    from mediqa.agent.samples import write_phantom_ct
    from mediqa.agent.scoring.classical import ClassicalScorer
    from mediqa.agent.service import Agent

    export = tmp_path / "export"
    export.mkdir()
    config = config_from_dict({"state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"},
                               "completion": {"quiet_period_s": {"default": 0.5}},
                               "watch": {"file_stable_s": 0.0, "reconcile_interval_s": 0.3}})
    metrics = AgentMetrics(site="test")
    sheets = SheetWriter(config.state_path)
    holder: dict = {}

    def on_result(result, rid):
        if rid:
            metrics.scored(result.decision, result.modality, None)
            holder["console"].notify(rid)
            sheets.submit(rid, lambda uid=result.series_uid: holder["agent"].tracker.records(uid), result)

    agent = holder["agent"] = Agent(config, ClassicalScorer(), export, on_result=on_result)
    console = holder["console"] = start_console(
        ConsoleConfig(listen="127.0.0.1:0"), config.state_path, metrics=metrics, db=lambda: agent.db,
        status=lambda: agent_status(agent, last_file_at=lambda: metrics.last_file_event), heartbeat_s=1.0)
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), kwargs={"watch": False, "tick_s": 0.1})
    loop.start()
    try:
        page.goto(console.url)
        page.wait_for_selector("#s-backend:text('numpy')")
        write_phantom_ct(export / "a", noise_hu=4.0, seed=0, slices=8, size=96)
        write_phantom_ct(export / "b", noise_hu=60.0, seed=1, slices=8, size=96)
        page.wait_for_selector(".card-retake", timeout=30_000)
        page.wait_for_selector(".card-ok", timeout=30_000)
        page.wait_for_function("() => { const i = document.querySelector('.card-retake img.thumb');"
                               " return i && i.complete && i.naturalWidth === 224; }", timeout=30_000)
        assert "image noise" in page.inner_text(".card-retake")
    finally:
        stop.set()
        loop.join(30)
        console.stop()
        sheets.close()
        agent.close()
    assert page.errors == []
