"""One notification through apprise: its words, its destination, and no credential anywhere else.

``notify.py`` keeps the outbox and the worker; this module is what touches apprise:

- ``load_apprise`` imports apprise and loads its plugins once (their import-time deprecation warnings
  silenced), and puts ``LogGuard`` on the loggers a send writes to (``apprise``, ``urllib3``,
  ``requests``): every secret of a configured destination is redacted from their records, and while
  this agent sends, their records are taken in (``capture``) and reported in our own words, once.
  The ``apprise`` logger is set to WARNING when nobody set its level (its DEBUG lines carry URLs and
  payloads; WARNING is what a failed send says).
- ``check_destination`` validates a configured URL at load: a ``ConfigError`` names the destination by
  its index (``notify.destinations[2]``) and at most its scheme, never the URL.
- ``destination_key`` is how the outbox names a destination: a slow salted hash of the URL as written
  in the config (before ``${VAR}`` expansion), so a hostile reader of the state file cannot recover a
  credential from it and a rotated secret in the environment keeps the key.
- ``compose`` writes the title and body from a stored result: series number, description, modality,
  score, reasons, worst slice, notices and the result id for ``mediqa alerts --ack``. No DICOM UID,
  no patient attribute (the result holds none), no path (header text also loses anything path-like).
- ``Destination.send`` sends one message and returns None or the (redacted) reason it failed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from mediqa.agent.report.privacy import clean_text
from mediqa.errors import ConfigError

log = logging.getLogger(__name__)

# Loggers a send writes to, directly (a logger's filter does not see its children's records).
GUARDED_LOGGERS = ("apprise", "requests", "urllib3", "urllib3.connectionpool", "urllib3.connection",
                   "urllib3.response", "urllib3.util.retry", "urllib3.poolmanager")
# Schemes whose host is a server address, not a token (kept in messages: "cannot reach 10.0.0.5").
ADDRESS_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PATHLIKE = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|\\\\|~?/)[^\s'\"]+")
_KEY_SALT = b"mediqa-edge notify destination v1"
_KEY_ROUNDS = 100_000  # ~0.05 s once per destination: a weak password in a URL is not brute-forced cheaply
REDACTED = "<redacted>"
ERROR_LIMIT = 300


class Redactor:
    """Removes every secret-bearing part of the configured destination URLs from a text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, url: str) -> None:
        found = url_secrets(url)
        with self._lock:
            if found <= self._secrets:
                return
            self._secrets |= found
            alternatives = "|".join(re.escape(s) for s in sorted(self._secrets, key=len, reverse=True))
            self._pattern = re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)


def url_secrets(url: str) -> set[str]:
    """The parts of a destination URL that may be credentials: all of it, its user and password, every
    path segment and query value, and its host unless the scheme names a server there. Raw and decoded."""
    found = {url}
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        userinfo, _, hostport = parts.netloc.rpartition("@")
        found.update(userinfo.split(":", 1) if userinfo else ())
        if scheme not in ADDRESS_SCHEMES:
            found.add(hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport)
        found.update(parts.path.split("/"))
        for pair in parts.query.split("&"):
            found.add(pair.partition("=")[2])
        found.update(parts.fragment.split("/"))
    except ValueError:
        pass
    decoded = {unquote(s) for s in found} | {unquote_plus(s) for s in found}
    return {s for s in found | decoded if len(s) >= 3}


REDACT = Redactor()
_local = threading.local()


class LogGuard(logging.Filter):
    """On the loggers a send writes to: redacts secrets; while this thread sends, keeps their records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = REDACT(record.getMessage())
        except Exception:  # noqa: BLE001 - a malformed record must not break the send that logged it
            text = REDACT(str(record.msg))
        captured: list[str] | None = getattr(_local, "captured", None)
        if captured is not None:  # ours to report, in our words and at our level
            if record.levelno >= logging.WARNING and record.name.split(".")[0] == "apprise":
                captured.append(text)
            return False
        record.msg, record.args = text, None
        if record.exc_info:
            record.exc_text = REDACT(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_GUARD = LogGuard()
_load_lock = threading.Lock()
_loaded: ModuleType | None = None


def load_apprise() -> ModuleType:
    """apprise, imported with its plugins loaded, its loggers guarded (once per process)."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            for name in GUARDED_LOGGERS:
                logger = logging.getLogger(name)
                if _GUARD not in logger.filters:
                    logger.addFilter(_GUARD)
            apprise_logger = logging.getLogger("apprise")
            if apprise_logger.level == logging.NOTSET:  # its DEBUG is chatty; WARNING is what we report
                apprise_logger.setLevel(logging.WARNING)
            with warnings.catch_warnings():  # plugin modules import deprecated stdlib modules (imghdr)
                warnings.simplefilter("ignore")
                import apprise

                with capture():
                    apprise.NotificationManager().load_modules()
            _loaded = apprise
        return _loaded


@contextmanager
def capture() -> Iterator[list[str]]:
    """Take in what apprise logs in this thread meanwhile (redacted WARNING+ lines), letting nothing out."""
    previous = getattr(_local, "captured", None)
    said: list[str] = []
    _local.captured = said
    try:
        yield said
    finally:
        _local.captured = previous


def expand(template: str, where: str) -> str:
    """``${NAME}`` replaced by the environment's value (a secret kept out of the config file)."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where} names ${{{name}}}, which is not set in the agent's environment",
                              "set it in the service's environment, or write the value in the URL")
        return os.environ[name]

    return _VARIABLE.sub(value, template)


def scheme_of(url: str) -> str | None:
    match = _SCHEME.match(url.strip())
    return match.group(1).lower() if match else None


@functools.lru_cache(maxsize=64)
def destination_key(template: str) -> str:
    """How the outbox names a destination: ``d-`` + 16 hex of a slow salted hash of its URL as configured."""
    digest = hashlib.pbkdf2_hmac("sha256", template.encode("utf-8", "surrogatepass"), _KEY_SALT, _KEY_ROUNDS)
    return "d-" + digest.hex()[:16]


def check_destination(index: int, template: object) -> None:
    """Raise ``ConfigError`` unless ``template`` is an apprise URL usable here (says which, never the URL)."""
    where = f"notify.destinations[{index}]"
    example = "an apprise URL, e.g. json://host:port/path, mailto://user:password@host, workflows://... (Teams)"
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"{where} is empty", example)
    scheme = scheme_of(template)
    if scheme is None:
        raise ConfigError(f"{where} is not a URL (scheme://...)", example)
    url = expand(template, where)
    REDACT.add(template)
    REDACT.add(url)
    apprise = load_apprise()
    manager = apprise.NotificationManager()
    if scheme not in manager:
        raise ConfigError(f"{where} uses {scheme}://, which apprise does not know",
                          "see the apprise documentation for its URLs (Teams is workflows://, Slack slack://)")
    if not manager[scheme].enabled:
        raise ConfigError(f"{where} ({scheme}://) cannot be used on this system",
                          "its system library is missing (desktop notifications need dbus or PyGObject on Linux, "
                          "pywin32 on Windows)")
    with capture() as said:
        plugin = apprise.Apprise.instantiate(url, asset=_asset(apprise))
    if plugin is None:
        why = f": {clean_text(said[-1], 160)}" if said else ""
        raise ConfigError(f"{where} is not a valid {scheme}:// destination{why}",
                          "check the URL against the apprise documentation of that service")


def _asset(apprise: ModuleType) -> Any:
    return apprise.AppriseAsset(app_id="MedIQA Edge", app_desc="MedIQA Edge image-quality alerts",
                                storage_mode="memory", secure_logging=True)


class Destination:
    """One configured destination: its index, key and scheme; its apprise plugin, made on first use."""

    def __init__(self, index: int, template: str, timeout_s: float) -> None:
        self.index = index
        self.template = template
        self.key = destination_key(template)
        self.scheme = scheme_of(template) or "?"
        self.timeout_s = timeout_s
        self._plugin: Any = None

    @property
    def label(self) -> str:
        return f"destination {self.index} ({self.scheme})"

    def send(self, title: str, body: str, kind: str) -> str | None:
        """Send one message; None when the destination accepted it, else why not (redacted, bounded)."""
        apprise = load_apprise()
        with capture() as said:
            try:
                if self._plugin is None:
                    url = expand(self.template, f"notify.destinations[{self.index}]")
                    REDACT.add(url)
                    plugin = apprise.Apprise.instantiate(url, asset=_asset(apprise))
                    if plugin is None:
                        return _bounded(said[-1] if said else "the destination URL cannot be loaded")
                    plugin.socket_connect_timeout = plugin.socket_read_timeout = self.timeout_s
                    self._plugin = plugin
                ok = self._plugin.notify(body=body, title=title, notify_type=apprise.NotifyType(kind),
                                         body_format=apprise.NotifyFormat.TEXT)
            except Exception as exc:  # noqa: BLE001 - a plugin's bug is this message's failure, not the agent's
                return _bounded(REDACT(f"{type(exc).__name__}: {exc}"))
        return None if ok else _bounded(said[-1] if said else "the destination did not accept the message")


def _bounded(text: str) -> str:
    return clean_text(REDACT(text), ERROR_LIMIT)


# --- the words --------------------------------------------------------------------------------------

def plain(text: object, limit: int) -> str:
    """Header or reason text for a message: one clean line, nothing that looks like a file path."""
    return clean_text(_PATHLIKE.sub("<path>", clean_text(str(text), 1000)), limit)


def compose(data: Mapping[str, Any], result_id: int) -> tuple[str, str, str]:
    """(title, body, apprise notify type) of a stored result (``SeriesResult.to_json`` plus its row)."""
    decision = str(data.get("decision") or "")
    number = data.get("series_number")
    series = f"#{number}" if isinstance(number, int) else "#?"
    desc = plain(data.get("series_description") or "(no description)", 64)
    modality = plain(data.get("modality") or "?", 8)
    label = {"retake": "RETAKE", "unscored": "UNSCORED"}.get(decision, plain(decision.upper(), 16))
    title = f"{label} {series} {desc} ({modality})"
    slices = data.get("slices")
    lines: list[str] = []
    if decision == "retake":
        lines.append(f"A retake is suggested for series {series} {desc} ({modality}): its image quality is below "
                     "the site's limit.")
    elif decision == "unscored":
        lines.append(f"Series {series} {desc} ({modality}) could not be scored: nobody has checked its image "
                     "quality.")
    else:
        lines.append(f"Series {series} {desc} ({modality}): {plain(decision, 16)}.")
    score = data.get("score")
    if isinstance(score, (int, float)) and math.isfinite(score):
        lines.append(f"Score: {score:.2f} (0 = unusable, 4 = excellent).")
    reasons = [plain(r, 240) for r in data.get("reasons") or ()][:6]
    if reasons:
        lines.append("Why:")
        lines.extend(f"- {r}" for r in reasons)
    worst = data.get("worst_slice")
    if isinstance(worst, Mapping) and isinstance(worst.get("rank"), int):
        where = f"slice {worst['rank']}" + (f" of {slices}" if isinstance(slices, int) and slices else "")
        if isinstance(worst.get("position_mm"), (int, float)):
            where += f", at {worst['position_mm']:+.1f} mm"
        if isinstance(worst.get("score"), (int, float)):
            where += f", score {worst['score']:.2f}"
        lines.append(f"Worst: {where}.")
    lines.extend(f"Note: {plain(n, 240)}." for n in list(data.get("notices") or ())[:4])
    lines.append(f"Result {result_id}: acknowledge it at the console with: mediqa alerts --ack {result_id}")
    kind = {"retake": "failure", "unscored": "warning"}.get(decision, "info")
    return title, "\n".join(lines), kind
