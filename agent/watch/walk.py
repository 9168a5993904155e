"""The one folder walk: every candidate file below a root, in a stable order, by one filter.

Used by the agent's reconciliation scan (and for folders that appear) and by ``scan_tree`` for
one-shot scoring, so both see the same files. Skipped by name: dot files and dot folders (editor,
sync and OS droppings, half-copied ``.part`` files), and DICOMDIR / LICENSE files (a media index and
a data set's licence, never images). A folder that cannot be listed is logged by its path relative
to the walk root (export paths can carry patient names) and skipped.

The walk never recurses (``os.walk`` does on Python 3.11: a tree ~1,000 folders deep raised
RecursionError), stops at ``max_depth`` folders below the export root (``watch.max_depth``), follows a
symbolic link only when its target lies inside the export root (``watch.follow_links: inside``) or
never (``never``), and lists each folder once (``(st_dev, st_ino)``), so ``loop -> ..`` cannot make it
go round. What it leaves out is reported through ``on_problem(kind, relative_path)``, once per walk
and item, where ``kind`` is one of PROBLEM_KINDS.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SKIPPED_NAMES = frozenset({"DICOMDIR", "LICENSE"})  # compared upper-case
FOLLOW_LINKS = ("inside", "never")
PROBLEM_KINDS = (
    "too_deep",  # a folder deeper than max_depth: not listed
    "unreadable",  # a folder that could not be listed (permissions, vanished, name too long...)
    "link_outside",  # a symbolic link whose target is outside the export root: not followed
    "link_skipped",  # a symbolic link, with follow_links="never"
    "link_loop",  # a folder reached a second time (through a link or a bind mount): not listed again
)
ProblemCallback = Callable[[str, str], None]


def skipped_name(name: str) -> bool:
    """True for a file or folder name the walk never descends into or yields."""
    return name.startswith(".") or name.upper() in SKIPPED_NAMES


def shown(path: str) -> str:
    """A path as it may appear in a log line: bytes that are not UTF-8 as U+FFFD, controls as spaces."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)


def depth_below(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> int:
    """Folder levels of ``path`` below ``root`` (0 for root itself); -1 when ``path`` is not below root."""
    try:
        rel = os.path.relpath(os.fspath(path), os.fspath(root))
    except ValueError:  # another drive (Windows)
        return -1
    if rel == os.curdir:
        return 0
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return -1
    return len(rel.split(os.sep))


def is_inside(boundary: str, target: str) -> bool:
    """True when the resolved ``target`` is ``boundary`` or below it (both already resolved)."""
    try:
        return os.path.commonpath([boundary, target]) == boundary
    except ValueError:  # different drives (Windows) or a mix of absolute and relative paths
        return False


def walk_files(root: str | os.PathLike[str], *, max_depth: int = 32, follow_links: str = "inside",
               on_problem: ProblemCallback | None = None, within: str | os.PathLike[str] | None = None
               ) -> Iterator[str]:
    """Every regular file below ``root`` (or ``root`` itself when it is a file), sorted per folder.

    ``within`` is the export root that ``root`` lies in (default: ``root``): depth counts from it and
    links must resolve inside it, so a rescan of a new subfolder applies the same rules as the full walk.
    Files are yielded by the path they were found at (a link's own path, not its target's).
    """
    if follow_links not in FOLLOW_LINKS:
        raise ValueError(f"follow_links must be one of {FOLLOW_LINKS}, not {follow_links!r}")
    top = str(Path(root))  # normalised as ``Path`` does ("./a/" -> "a"), so paths read the same everywhere
    if os.path.isfile(top):
        yield top
        return
    export = str(Path(within)) if within is not None else top
    boundary = os.path.realpath(export)
    start_depth = max(0, depth_below(export, top))
    reported: set[tuple[str, str]] = set()

    def problem(kind: str, path: str, reason: str = "") -> None:
        rel = os.path.relpath(path, export)
        if (kind, rel) in reported:
            return
        reported.add((kind, rel))
        if kind == "unreadable":
            log.warning("cannot list folder %s below the watched root: %s", shown(rel), reason)
        elif kind == "too_deep":  # no path: it would be the deepest, most personal one
            log.debug("a folder deeper than watch.max_depth (%d) below the export root was not walked", max_depth)
        else:
            log.debug("a symbolic link below the export root was not followed (%s)", kind)
        if on_problem is not None:
            on_problem(kind, rel)

    def unreadable(path: str, exc: OSError) -> None:
        problem("unreadable", path, exc.strerror or type(exc).__name__)

    if within is not None and os.path.islink(top):  # a rescan of a folder that is itself a link
        if follow_links == "never":
            problem("link_skipped", top)
            return
        if not is_inside(boundary, os.path.realpath(top)):
            problem("link_outside", top)
            return
    visited: set[tuple[int, int]] = set()
    try:
        st = os.stat(top)
    except OSError as exc:
        unreadable(top, exc)
        return
    visited.add((st.st_dev, st.st_ino))
    stack: list[tuple[str, int]] = [(top, start_depth)]  # (folder, its depth below the export root)
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            unreadable(folder, exc)
            continue
        subfolders: list[str] = []
        for entry in entries:
            if skipped_name(entry.name):
                continue
            kind = _classify(entry, follow_links, boundary)
            if kind is None:
                continue
            if kind in ("link_outside", "link_skipped"):
                problem(kind, entry.path)
            elif kind == "file":
                yield entry.path
            else:  # "folder"
                if depth + 1 > max_depth:
                    problem("too_deep", entry.path)
                    continue
                try:
                    sub = entry.stat()  # follows a link (one that resolved inside the root)
                except OSError as exc:
                    unreadable(entry.path, exc)
                    continue
                key = (sub.st_dev, sub.st_ino)
                if key in visited:
                    problem("link_loop", entry.path)
                    continue
                visited.add(key)
                subfolders.append(entry.path)
        # depth first, in name order, like os.walk(topdown=True): push in reverse so the first pops first
        stack.extend((path, depth + 1) for path in reversed(subfolders))


def _classify(entry: os.DirEntry[str], follow_links: str, boundary: str) -> str | None:
    """"file", "folder", "link_outside", "link_skipped", or None (nothing to walk: a pipe, a dangling link...)."""
    try:
        if not entry.is_symlink():  # the common case answers from the directory listing, no stat call
            if entry.is_dir(follow_symlinks=False):
                return "folder"
            return "file" if entry.is_file(follow_symlinks=False) else None
        if follow_links == "never":
            return "link_skipped"
        if not is_inside(boundary, os.path.realpath(entry.path)):
            return "link_outside"
        mode = entry.stat().st_mode  # the target's (a link whose target is inside the export root)
    except OSError:
        return None  # vanished, or a dangling link
    if stat.S_ISDIR(mode):
        return "folder"
    return "file" if stat.S_ISREG(mode) else None


def tree_deeper_than(root: str | os.PathLike[str], depth: int) -> bool:
    """True when a folder lies more than ``depth`` levels below ``root`` (links not followed; no recursion).

    Stops at the first such folder, so on a tree within the limit it lists every folder once.
    """
    stack: list[tuple[str, int]] = [(os.fspath(root), 0)]
    while stack:
        folder, level = stack.pop()
        try:
            with os.scandir(folder) as it:
                subfolders = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        if subfolders and level + 1 > depth:
            return True
        stack.extend((path, level + 1) for path in subfolders)
    return False
