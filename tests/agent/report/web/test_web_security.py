"""Who may read and write through the console: tokens, Host, cross-site POSTs, CSRF, paths, patient data."""

from __future__ import annotations

import json
import os
import stat

import pytest
from web_support import launch, request

from mediqa.agent.report.feedback import feedback_for
from mediqa.agent.report.web import ConsoleConfig, parse_listen
from mediqa.agent.report.web.config import check_console, is_loopback
from mediqa.agent.report.web.security import TOKEN_FILE, Guard
from mediqa.errors import ConfigError


def _origin(server):
    return f"http://127.0.0.1:{server.port}"


def _post(server, body, **headers):
    return request(server, "POST", "/api/feedback", body, headers)


def test_listen_addresses_and_settings():
    assert parse_listen("127.0.0.1:8765").loopback and parse_listen("[::1]:9").loopback
    assert parse_listen("localhost:1").loopback and not parse_listen("0.0.0.0:8765").loopback
    assert not parse_listen("console.example:80").loopback and parse_listen("off") is None
    assert str(parse_listen("[::1]:8765")) == "[::1]:8765" and not is_loopback("10.0.0.1")
    for bad in ("8765", "host:", "host:99999", "::1:80"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
    with pytest.raises(ConfigError, match="shorter"):
        check_console(ConsoleConfig(token="short"))
    with pytest.raises(ConfigError, match="negative"):
        check_console(ConsoleConfig(sheets_max_mb=-1))


def test_a_console_bound_elsewhere_requires_its_token(tmp_path):
    """The logic of a non-loopback console, without binding anywhere but loopback."""
    guard = Guard.create(ConsoleConfig(listen="0.0.0.0:8765"), parse_listen("0.0.0.0:8765"), tmp_path)
    assert guard.required and not guard.authorised({}.get)
    token_file = tmp_path / TOKEN_FILE
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600 and token_file.read_text().strip() == guard.token
    again = Guard.create(ConsoleConfig(listen="0.0.0.0:8765"), parse_listen("0.0.0.0:8765"), tmp_path)
    assert again.token == guard.token and again.csrf == guard.csrf  # stable across restarts: open pages keep working
    assert guard.authorised({"Authorization": f"Bearer {guard.token}"}.get)
    assert guard.authorised({"Cookie": f"mediqa_console={guard.token}"}.get)
    assert guard.authorised({}.get, query_token=guard.token)
    assert not guard.authorised({"Authorization": "Bearer nope"}.get) and guard.host_ok("console.example:8765")
    local = Guard.create(ConsoleConfig(), parse_listen("127.0.0.1:8765"), tmp_path)
    assert not local.required and local.authorised({}.get)
    assert local.host_ok("127.0.0.1:8765") and local.host_ok("localhost") and local.host_ok("[::1]:8765")
    assert not local.host_ok("evil.example:8765") and not local.host_ok(None)
    configured = Guard.create(ConsoleConfig(token="x" * 20), parse_listen("127.0.0.1:1"), tmp_path)
    assert configured.required and configured.token == "x" * 20


def test_token_by_bearer_cookie_or_once_in_the_address(state, phantoms):
    token = "t" * 24
    server = launch(state, cfg=ConsoleConfig(listen="127.0.0.1:0", token=token))
    try:
        status, headers, body = request(server, "GET", "/")
        assert status == 401 and b"Access token needed" in body and token.encode() not in body
        assert request(server, "GET", "/api/results")[0] == 401
        assert request(server, "GET", "/metrics")[0] == 401
        assert request(server, "GET", "/events")[0] == 401
        assert request(server, "GET", "/healthz")[0] == 200  # status only, no reasons, without the token
        assert request(server, "GET", "/api/status", headers={"Authorization": f"Bearer {token}"})[0] == 200
        status, headers, _ = request(server, "GET", f"/history?decision=ok&token={token}")
        assert status == 303 and headers["location"] == "/history?decision=ok"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert request(server, "GET", "/", headers={"Cookie": cookie.split(";")[0]})[0] == 200
        assert request(server, "GET", "/?token=wrong")[0] == 401
    finally:
        server.stop()


def test_a_loopback_console_hands_out_no_cookie_for_a_wrong_token(console):
    status, headers, _ = request(console, "GET", "/?token=guess")
    assert status == 200 and "set-cookie" not in headers


def test_host_header_must_name_loopback(console):
    status, _, _ = request(console, "GET", "/", headers={"Host": "attacker.example"})
    assert status == 421  # a DNS-rebinding page cannot read a loopback console


def test_cross_site_posts_and_missing_csrf_are_refused(state, console, phantoms):
    rid = state.add(*phantoms["retake"])
    csrf = console.app.guard.csrf
    body = {"result_id": rid, "kind": "false_alert", "initials": "AB"}
    assert _post(console, body, **{"X-CSRF-Token": csrf, "Origin": "http://evil.example"})[0] == 403
    assert _post(console, body, **{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})[0] == 403
    assert _post(console, body, **{"X-CSRF-Token": csrf})[0] == 403  # neither Origin nor Sec-Fetch-Site
    assert _post(console, body, Origin=_origin(console))[0] == 403  # same origin, no CSRF token
    assert _post(console, body, Origin=_origin(console), **{"X-CSRF-Token": "0" * 64})[0] == 403
    assert feedback_for(state.db, [rid]) == {}
    status, _, reply = _post(console, body, Origin=_origin(console), **{"X-CSRF-Token": csrf,
                                                                          "Sec-Fetch-Site": "same-origin"})
    assert status == 200, reply
    data = json.loads(reply)
    assert data["feedback"]["kind"] == "false_alert" and data["card"]["acknowledged"]
    assert "series_uid" not in data["feedback"]
    (fb,) = feedback_for(state.db, [rid])[rid]
    assert (fb.kind, fb.initials) == ("false_alert", "AB")
    wrong = _post(console, {"result_id": rid, "kind": "should_have_alerted"}, Origin=_origin(console),
                  **{"X-CSRF-Token": csrf})
    assert wrong[0] == 400 and b"cannot be answered" in wrong[2]


def test_a_plain_form_post_works_without_script(state, console, phantoms):
    rid = state.add(*phantoms["ok"])
    form = f"csrf={console.app.guard.csrf}&result_id={rid}&kind=should_have_alerted&note=ring+artefact".encode()
    status, headers, _ = request(console, "POST", "/api/feedback", form,
                                 {"Origin": _origin(console), "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["location"] == f"/series/{rid}"
    assert feedback_for(state.db, [rid])[rid][0].note == "ring artefact"


@pytest.mark.parametrize("path", [
    "/static/../../../etc/passwd", "/static/", "/static/console.py", "/static/%2e%2e/server.py",
    "/sheet/..%2fstate.sqlite", "/sheet/1.png/..", "/series/1/../../etc", "/history/", "/state.sqlite", "/sheets/",
    "//etc/passwd", "/api/",
])
@pytest.mark.slow
def test_no_path_from_the_request_reaches_the_file_system(console, path):
    status, _, body = request(console, "GET", path)
    assert status == 404 and b"root:" not in body and b"<a href" not in body


def test_a_sheet_is_served_only_for_a_result_in_the_database(state, console, phantoms):
    stray = state.path / "sheets" / "777.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"\x89PNG not ours")
    assert request(console, "GET", "/sheet/777.png")[0] == 404


def test_patient_name_only_when_the_site_turns_it_on(state, phantoms):
    rid = state.add(*phantoms["retake"])
    with state.db.transaction() as conn:  # as if the service had stored it in the result (it does not today)
        (payload,) = conn.execute("SELECT json FROM results WHERE id=?", (rid,)).fetchone()
        conn.execute("UPDATE results SET json=? WHERE id=?",
                     (json.dumps(dict(json.loads(payload), patient_name="DOE^JANE", patient_id="123")), rid))
    hidden = launch(state)
    shown = launch(state, cfg=ConsoleConfig(listen="127.0.0.1:0", show_patient=True))
    try:
        for path in ("/api/results?after=0", f"/api/series/{rid}", f"/series/{rid}", "/history", "/history.csv"):
            body = request(hidden, "GET", path)[2]
            assert b"DOE" not in body and b"patient" not in body.lower(), path
        card = json.loads(request(shown, "GET", "/api/results?after=0")[2])["results"][0]
        assert card["patient_name"] == "DOE^JANE" and "patient_id" not in card
        assert b"DOE^JANE" in request(shown, "GET", f"/series/{rid}")[2]
    finally:
        hidden.stop()
        shown.stop()
