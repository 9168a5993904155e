"""The one folder walk: every candidate file below a root, in a stable order, by one filter.

Used by the agent's reconciliation scan (and for folders that appear) and by ``scan_tree`` for
one-shot scoring, so both see the same files. Skipped by name: dot files and dot folders (editor,
sync and OS droppings, half-copied ``.part`` files), and DICOMDIR / LICENSE files (a media index and
a data set's licence, never images). A folder that cannot be listed is logged by its path relative
to the walk root (export paths can carry patient names) and skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SKIPPED_NAMES = frozenset({"DICOMDIR", "LICENSE"})  # compared upper-case


def skipped_name(name: str) -> bool:
    """True for a file or folder name the walk never descends into or yields."""
    return name.startswith(".") or name.upper() in SKIPPED_NAMES


def walk_files(root: str | os.PathLike[str]) -> Iterator[str]:
    """Every regular file below ``root`` (or ``root`` itself when it is a file), sorted per folder."""
    top = str(Path(root))  # normalised as ``Path`` does ("./a/" -> "a"), so paths read the same everywhere
    if os.path.isfile(top):
        yield top
        return

    def unreadable(exc: OSError) -> None:
        where = os.path.relpath(exc.filename, top) if isinstance(exc.filename, str) else "?"
        log.warning("cannot list folder %s below the watched root: %s", where, exc.strerror or type(exc).__name__)

    for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not skipped_name(d))
        for name in sorted(filenames):
            if not skipped_name(name):
                yield os.path.join(dirpath, name)
