"""Who may see the console and who may change anything through it.

- **Reading.** On loopback the page is open to the console's own user (unless ``console.token`` is set).
  On any other address every request but a bare ``/healthz`` needs the token: from ``console.token``,
  else generated at first start and kept in ``<state_dir>/console-token`` (0600). It arrives as
  ``Authorization: Bearer <token>`` (Prometheus, scripts) or as the ``mediqa_console`` cookie, which
  ``/?token=<token>`` sets once (HttpOnly, SameSite=Strict) before redirecting the token out of the URL.
- **DNS rebinding.** A loopback console answers only requests whose ``Host`` names loopback, so a web page
  elsewhere that re-points its own name at 127.0.0.1 cannot read it.
- **Cross-site writes.** A POST needs a same-origin ``Origin`` (or ``Sec-Fetch-Site: same-origin``) AND the
  CSRF token embedded in the page (``X-CSRF-Token`` header or ``csrf`` form field). The CSRF token is an
  HMAC of the access token, so it survives a console restart (an open page can still answer).

Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from mediqa.agent.report.web.config import ConsoleSettings, Listen, is_loopback

log = logging.getLogger(__name__)

TOKEN_FILE = "console-token"
Header = Callable[[str], "str | None"]  # a request's header by name (``self.headers.get``)
COOKIE = "mediqa_console"


def load_or_create_token(state_dir: Path) -> str:
    """The console's generated token (created 0600 at first start); in memory only if it cannot be stored."""
    path = state_dir / TOKEN_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
        if len(text) >= 16:
            return text
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    except OSError as exc:
        log.warning("console token cannot be read (%s): a new one is used for this run", exc.strerror)
        return secrets.token_urlsafe(32)
    token = secrets.token_urlsafe(32)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("console token cannot be stored (%s): it is valid for this run only", exc.strerror)
    return token


@dataclass(frozen=True)
class Guard:
    token: str
    required: bool  # every request needs the token (non-loopback, or console.token set)
    csrf: str
    loopback: bool
    port: int

    @classmethod
    def create(cls, cfg: ConsoleSettings, where: Listen, state_dir: Path) -> Guard:
        token = cfg.token or load_or_create_token(state_dir)
        return cls(token=token, required=bool(cfg.token) or not where.loopback,
                   csrf=hmac.new(token.encode(), b"mediqa-console-csrf", hashlib.sha256).hexdigest(),
                   loopback=where.loopback, port=where.port)

    def token_ok(self, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(str(offered).encode(), self.token.encode())

    def authorised(self, header: Header, query_token: str | None = None) -> bool:
        """True when no token is required, or the request carries it (bearer, cookie or ``?token=``)."""
        if not self.required:
            return True
        auth = header("Authorization") or ""
        if auth[:7].lower() == "bearer " and self.token_ok(auth[7:].strip()):
            return True
        return self.token_ok(cookie_value(header("Cookie"))) or self.token_ok(query_token)

    def host_ok(self, host: str | None) -> bool:
        """A loopback console serves only Host names that are loopback (DNS-rebinding defence)."""
        if not self.loopback:
            return True
        if not host:
            return False
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def same_origin(self, header: Header) -> bool:
        """A POST from this console's own page: its Origin names our host, Sec-Fetch-Site says same-origin."""
        origin = header("Origin")
        site = header("Sec-Fetch-Site")
        host = header("Host") or ""
        if origin is None and site is None:
            return False  # a browser always sends one of them on a POST; a bare client must not pass as one
        if site is not None and site != "same-origin":
            return False
        return origin is None or origin in (f"http://{host}", f"https://{host}")

    def csrf_ok(self, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(str(offered).encode(), self.csrf.encode())

    def cookie_header(self) -> str:
        return f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"


def cookie_value(header: str | None, name: str = COOKIE) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None
