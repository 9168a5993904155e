"""What may reach a log line: no patient names or IDs, also none hidden in file paths or header text.

Consoles often name export folders and files after the patient ("DOE^JOHN_12345/IM0001"). Log lines
therefore name a file by a pseudonymous key (``f-<sha256 prefix>``, stable, useless to re-identify) or,
when a site turns it on (``report.log_paths: relative``), by its path below the export root. Header
strings are printed only after ``clean_text`` removed control characters (an ESC or CR in a
SeriesDescription must not forge a console line). ``PathScrubber`` is a logging filter that replaces
any absolute path below the export root left in a message or a traceback (exceptions from the OS
carry the full path).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def file_key(path: str) -> str:
    """Stable pseudonymous key of a file path (bytes-safe: undecodable names hash like the others)."""
    raw = os.fsencode(path)
    return "f-" + hashlib.sha256(raw).hexdigest()[:12]


def clean_text(text: str, limit: int = 200) -> str:
    """Header text fit for one console or log line: controls become spaces, length is bounded."""
    cleaned = _CONTROL.sub(" ", unicodedata.normalize("NFC", str(text)))
    cleaned = "".join(c if c.isprintable() else " " for c in cleaned)
    return cleaned[:limit]


class PathLabels:
    """How this agent names files in logs: ``key`` (default) or ``relative`` to the export root."""

    def __init__(self, root: str | os.PathLike[str], mode: str = "key") -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.mode = mode

    def label(self, path: str | os.PathLike[str]) -> str:
        path = os.fspath(path)
        if self.mode == "relative":
            try:
                rel = os.path.relpath(path, self.root)
            except ValueError:  # another drive on Windows
                return file_key(path)
            if not rel.startswith(".."):
                return clean_text(rel.encode("utf-8", "backslashreplace").decode("utf-8"))
        return file_key(path)


class PathScrubber(logging.Filter):
    """Replace absolute paths below ``roots`` in log records (message, arguments and traceback text)."""

    def __init__(self, roots: list[str]) -> None:
        super().__init__()
        quoted = sorted({re.escape(os.path.abspath(r)) for r in roots if r}, key=len, reverse=True)
        # A root, then anything up to a quote, whitespace or the end: the path's tail may hold a name.
        self._pattern = re.compile("(" + "|".join(quoted) + r")[^'\"\s,)]*") if quoted else None

    def scrub(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: "<export>/" + file_key(m.group(0)), text)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = self.scrub(formatter.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True
