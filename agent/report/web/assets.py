"""The page's static files, read once from the package and served from memory under versioned URLs.

A fixed list (a request never names a file), each with a content hash: the page links
``/static/console.js?v=<hash>`` and the file is served ``immutable`` for a year, so a reload asks the
server for the page and the live data only, and an upgrade of the agent changes the URL.
"""

from __future__ import annotations

import hashlib
import threading
from importlib import resources

FILES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
_loaded: dict[str, tuple[bytes, str, str]] = {}
_lock = threading.Lock()


def _load() -> dict[str, tuple[bytes, str, str]]:
    with _lock:
        if not _loaded:
            folder = resources.files("mediqa.agent.report.web").joinpath("static")
            for name, ctype in FILES.items():
                body = folder.joinpath(name).read_bytes()
                _loaded[name] = (body, ctype, hashlib.sha256(body).hexdigest()[:12])
        return _loaded


def asset(name: str) -> tuple[bytes, str, str] | None:
    """(body, content type, version) of a known asset, or None."""
    return _load().get(name)


def url(name: str) -> str:
    """The versioned URL of an asset, for the pages."""
    found = asset(name)
    return f"/static/{name}" + (f"?v={found[2]}" if found else "")
