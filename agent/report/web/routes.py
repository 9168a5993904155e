"""The console's routes: one request handler, a fixed table of paths, nothing from a request on disk.

Paths are matched against a fixed table; ids in them are digits (or a uuid) looked up in the database,
and files are opened only by names this package builds (a static asset from a fixed list, a sheet by
its result's integer id). Every handler runs inside one ``try``: an error is a 500 and a log line with
the exception's type and where it happened, never its message (it could carry header text), and never
the query string (it may carry the token).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from mediqa.agent.report.feedback import FeedbackError
from mediqa.agent.report.metrics import CONTENT_TYPE
from mediqa.agent.report.web import assets, pages
from mediqa.agent.report.web.app import ConsoleApp
from mediqa.agent.report.web.events import resume_point, stream
from mediqa.agent.report.web.export import csv_bytes, filtered_cards, thumbnail
from mediqa.agent.report.web.reader import HistoryFilter, StateUnavailable
from mediqa.errors import MediqaError

log = logging.getLogger(__name__)

REF = r"(\d{1,12}|[0-9a-fA-F-]{36})"
MAX_BODY = 16 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ConsoleHandler(BaseHTTPRequestHandler):
    server_version = "MediqaConsole/1"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 20  # seconds a client may idle between requests, or take to read a write

    @property
    def app(self) -> ConsoleApp:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stdlib would print the full request line (its query may hold the token)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- dispatch -----------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        route = "?"
        self._sent = False
        if method == "POST":
            self.close_connection = True  # a refused POST leaves its body unread: never parse it as a request
        try:
            url = urlsplit(self.path)
            try:
                self.query = parse_qs(url.query, max_num_fields=20)
            except ValueError:
                return self._text(HTTPStatus.BAD_REQUEST, "too many parameters")
            guard = self.app.guard
            if not guard.host_ok(self.headers.get("Host")):
                return self._text(HTTPStatus.MISDIRECTED_REQUEST, "this console answers on its loopback address")
            if method == "GET" and url.path == "/healthz":
                return self.healthz(guard.authorised(self.headers.get))
            offered = self._q("token") or None
            if not guard.authorised(self.headers.get, offered):
                return self._unauthorised(url.path)
            if offered and method == "GET" and guard.token_ok(offered):  # into a cookie, out of the address bar
                rest = {k: v[0] for k, v in self.query.items() if k != "token"}
                return self._send(HTTPStatus.SEE_OTHER, b"", "text/plain",
                                  {"Location": url.path + ("?" + urlencode(rest) if rest else ""),
                                   "Set-Cookie": guard.cookie_header()})
            for verb, pattern, name in ROUTES:
                match = pattern.fullmatch(url.path)
                if match and verb == method:
                    route = name
                    getattr(self, name)(*match.groups())
                    return None
            if any(p.fullmatch(url.path) for _, p, _ in ROUTES):
                return self._text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
            return self._text(HTTPStatus.NOT_FOUND, "not found")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - the console answers 500 and goes on; scoring never notices
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
            log.error("console: %s %s failed (%s%s)", method, route, type(exc).__name__, where)
            if not self._sent:
                self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (logged)")
            self.close_connection = True
        return None

    def _q(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    # --- responses ----------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", (headers or {}).pop("Cache-Control", "no-store"))
        self._security_headers()
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self._sent = True
        self.wfile.write(body)

    def _security_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(obj, allow_nan=False, default=str, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _html(self, text: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _unauthorised(self, path: str) -> None:
        if path.startswith(("/api/", "/events", "/metrics", "/sheet/", "/thumb/")):
            self._send(HTTPStatus.UNAUTHORIZED, b'{"error":"token required"}\n', "application/json",
                       {"WWW-Authenticate": 'Bearer realm="mediqa-console"'})
            return
        page = pages.message_page("Access token needed", "This console is reachable from other machines, so it needs "
                                  "its access token: open this address with ?token=<token> once. The token is "
                                  "console.token in agent.yaml, or the console-token file in the agent's state folder.")
        self._send(HTTPStatus.UNAUTHORIZED, page.encode(), "text/html; charset=utf-8",
                   {"WWW-Authenticate": 'Bearer realm="mediqa-console"'})

    # --- pages ----------------------------------------------------------------------------------------
    def live(self) -> None:
        self._html(pages.live_page(self.app.guard.csrf, self.app.heartbeat_s, self.app.live_max_age_s))

    def detail(self, ref: str) -> None:
        row = self.app.reader.get(ref)
        if row is None:
            return self._html(pages.message_page("Not found", "No result with this id."), HTTPStatus.NOT_FOUND)
        return self._html(pages.detail_page(self.app.detail(row), self.app.guard.csrf, self.app.heartbeat_s))

    def _filter(self) -> HistoryFilter:
        day = self._q("day")
        return HistoryFilter(day=day if _DAY.match(day) else "", modality=self._q("modality")[:8],
                             decision=self._q("decision")[:12], feedback=self._q("feedback")[:24])

    def history(self) -> None:
        flt = self._filter()
        cards, modalities = filtered_cards(self.app, flt, limit=1000)
        self._html(pages.history_page(cards, flt, modalities, self.app.guard.csrf, self.app.heartbeat_s))

    def history_csv(self) -> None:
        cards, _ = filtered_cards(self.app, self._filter(), limit=100_000)
        self._send(HTTPStatus.OK, csv_bytes(cards), "text/csv; charset=utf-8",
                   {"Content-Disposition": 'attachment; filename="mediqa-history.csv"'})

    def static(self, name: str) -> None:
        found = assets.asset(name)
        if found is None:
            return self._text(HTTPStatus.NOT_FOUND, "not found")
        body, ctype, version = found
        cache = "public, max-age=31536000, immutable" if self._q("v") == version else "no-cache"
        return self._send(HTTPStatus.OK, body, ctype, {"Cache-Control": cache})

    def favicon(self) -> None:
        self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", {"Cache-Control": "public, max-age=86400"})

    def sheet(self, rid: str) -> None:
        self._picture(rid, crop=False)

    def thumb(self, rid: str) -> None:
        self._picture(rid, crop=True)

    def _picture(self, rid: str, crop: bool) -> None:
        row = self.app.reader.get(rid)  # the id is looked up first; the file name is built from the row's id
        path = self.app.sheet_file(int(row["result_id"])) if row is not None else None
        if path is None or not path.is_file():
            return self._text(HTTPStatus.NOT_FOUND, "no contact sheet")
        body = path.read_bytes()
        if crop:
            body = thumbnail(body, row or {})
        return self._send(HTTPStatus.OK, body, "image/png", {"Cache-Control": "private, max-age=300"})

    # --- data -----------------------------------------------------------------------------------------
    def events(self) -> None:
        if not self.server.streams.acquire(blocking=False):  # type: ignore[attr-defined]
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many open pages\n", "text/plain",
                              {"Retry-After": "5"})
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.send_header("X-Accel-Buffering", "no")
            self._security_headers()
            self.end_headers()
            self._sent = True
            self.close_connection = True
            last = resume_point(self.headers.get("Last-Event-ID"), self._q("after") or None)
            stream(self.app, self._write, last)
        finally:
            self.server.streams.release()  # type: ignore[attr-defined]
        return None

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def api_results(self) -> None:
        after = self._q("after", "0")
        limit = self._q("limit", "200")
        rows = self.app.reader.after(int(after) if after.isdigit() else 0,
                                     min(1000, int(limit)) if limit.isdigit() else 200)
        head = self.app.reader.head()[0]
        self._json({"results": self.app.cards(rows), "head": head,
                    "last_id": max([int(r["result_id"]) for r in rows], default=int(after) if after.isdigit() else 0)})

    def api_series(self, ref: str) -> None:
        row = self.app.reader.get(ref)
        if row is None:
            return self._json({"error": "no such result"}, HTTPStatus.NOT_FOUND)
        return self._json(self.app.detail(row))

    def api_status(self) -> None:
        self._json(self.app.status_json())

    def healthz(self, authorised: bool) -> None:
        st = self.app.agent_status()
        if not st.degraded:
            return self._json({"status": "ok"})
        body: dict[str, Any] = {"status": "degraded"}
        if authorised:
            body["reasons"] = list(st.reasons)
        return self._json(body, HTTPStatus.SERVICE_UNAVAILABLE)

    def metrics(self) -> None:
        with contextlib.suppress(StateUnavailable):
            self.app.agent_status()  # refreshes the degraded and queue gauges
        self._send(HTTPStatus.OK, self.app.metrics.render(), CONTENT_TYPE)

    def api_feedback(self) -> None:
        guard = self.app.guard
        form = self._body()
        is_form = not (self.headers.get("Content-Type") or "").startswith("application/json")
        if not guard.same_origin(self.headers.get):
            return self._json({"error": "cross-site request refused"}, HTTPStatus.FORBIDDEN)
        if not guard.csrf_ok(self.headers.get("X-CSRF-Token") or str(form.get("csrf") or "")):
            return self._json({"error": "missing or wrong CSRF token: reload the page"}, HTTPStatus.FORBIDDEN)
        rid = str(form.get("result_id") or "")
        if not rid.isdigit():
            return self._json({"error": "result_id must be a number"}, HTTPStatus.BAD_REQUEST)
        try:
            fb = self.app.record(int(rid), str(form.get("kind") or ""), str(form.get("note") or ""),
                                 str(form.get("initials") or ""))
        except FeedbackError as exc:
            return self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
        except (sqlite3.Error, MediqaError) as exc:  # a full disk, a locked or unopenable database
            log.warning("console: feedback not recorded (%s)", type(exc).__name__)
            return self._json({"error": "the state database cannot be written now: try again in a minute"},
                              HTTPStatus.SERVICE_UNAVAILABLE)
        if is_form:
            return self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": f"/series/{int(rid)}"})
        row = self.app.reader.get(rid)
        return self._json({"feedback": fb.to_json(), "card": self.app.cards([row])[0] if row else None})

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            return {}
        raw = self.rfile.read(int(length))
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), max_num_fields=20).items()}


def _routes() -> list[tuple[str, re.Pattern[str], str]]:
    table: list[tuple[str, str, str]] = [
        ("GET", r"/", "live"), ("GET", rf"/series/{REF}", "detail"), ("GET", r"/history", "history"),
        ("GET", r"/history\.csv", "history_csv"), ("GET", r"/static/([a-z0-9_-]{1,40}\.(?:css|js))", "static"),
        ("GET", r"/favicon\.ico", "favicon"), ("GET", r"/sheet/(\d{1,12})\.png", "sheet"),
        ("GET", r"/thumb/(\d{1,12})\.png", "thumb"), ("GET", r"/events", "events"),
        ("GET", r"/api/results", "api_results"), ("GET", rf"/api/series/{REF}", "api_series"),
        ("GET", r"/api/status", "api_status"), ("GET", r"/metrics", "metrics"),
        ("POST", r"/api/feedback", "api_feedback"),
    ]
    return [(verb, re.compile(pattern), name) for verb, pattern, name in table]


ROUTES = _routes()
