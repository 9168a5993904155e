"""A contact sheet per result in the state dir, for the console: the key slice beside the alert.

Sheets live in ``<state_dir>/sheets/<result_id>.png``: named by the result's row id only, so nothing a
browser sends ever becomes part of a path (the console looks the id up in the database, then opens the
file this module names). They are pictures of patients, kept owner-only and pruned by age and by total
size (oldest first), because a console disk fills up and the sheet is only needed while the alert is fresh.

Drawing a sheet reads the chosen slices from the export folder again (tens to hundreds of ms), so the
service never draws one in its loop: ``SheetWriter`` takes (result id, records or layout, result) after
the result is committed and draws it in its own daemon thread, dropping work (logged) rather than
queueing without bound. A sheet that fails is a log line without paths or patient data, never an error
of the agent. ``worst_tile_box`` finds the worst slice's tile on a sheet, for the card's thumbnail.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.agent.report.thumbnails import CAPTION_H, COLUMNS, MARGIN, TILE, TITLE_H, ResultLike, contact_sheet

log = logging.getLogger(__name__)

# What a sheet is drawn from: the series' layout, its records, or a callable that reads the records
# (called in the writer's thread: e.g. ``lambda: agent.tracker.records(uid)``, a read of the state database).
SheetSource = SeriesLayout | Sequence[InstanceRecord] | Callable[[], Sequence[InstanceRecord]]

SHEETS_DIR = "sheets"
_SHEET_NAME = re.compile(r"^(\d{1,18})\.png$")
_TMP_MAX_AGE_S = 3600.0  # a .tmp left by a crash mid-write


def sheets_dir(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / SHEETS_DIR


def sheet_path(state_dir: str | os.PathLike[str], result_id: int) -> Path:
    """The one file name of a result's sheet: built from an integer, never from request text."""
    rid = int(result_id)
    if rid < 0:
        raise ValueError("result ids are not negative")
    return sheets_dir(state_dir) / f"{rid}.png"


def write_sheet(state_dir: str | os.PathLike[str], result_id: int, layout: SeriesLayout,
                result: ResultLike) -> Path | None:
    """Draw ``result``'s sheet for the console; None when there is nothing to draw or drawing failed."""
    if not result.selection.indices:
        return None  # unscored or skipped: no chosen slices
    folder = sheets_dir(state_dir)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return contact_sheet(layout, result, sheet_path(state_dir, result_id))
    except Exception as exc:  # noqa: BLE001 - a picture for the console must never become the agent's error
        log.warning("contact sheet of result %d not written (%s)", int(result_id), type(exc).__name__)
        return None


def prune_sheets(folder: str | os.PathLike[str], max_age_h: float, max_mb: float,
                 now: float | None = None) -> int:
    """Delete sheets older than ``max_age_h``, then the oldest until the rest fit in ``max_mb``.

    Only files this module names (``<id>.png``, and stale ``.tmp`` left by a crash) are touched.
    ``max_age_h`` or ``max_mb`` <= 0 disables that limit. Returns how many files were removed.
    """
    now = time.time() if now is None else now
    entries: list[tuple[float, int, Path]] = []
    removed = 0
    try:
        scan = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in scan:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        path = Path(entry.path)
        if entry.name.endswith(".png.tmp") and now - st.st_mtime > _TMP_MAX_AGE_S:
            removed += _unlink(path)
        elif _SHEET_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            entries.append((st.st_mtime, st.st_size, path))
    entries.sort()
    if max_age_h > 0:
        cutoff = now - max_age_h * 3600.0
        keep = []
        for mtime, size, path in entries:
            if mtime < cutoff:
                removed += _unlink(path)
            else:
                keep.append((mtime, size, path))
        entries = keep
    if max_mb > 0:
        total = sum(size for _, size, _ in entries)
        limit = max_mb * 1024 * 1024
        for _, size, path in entries:
            if total <= limit:
                break
            removed += _unlink(path)
            total -= size
    return removed


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("contact sheet %s not removed (%s)", path.name, exc.strerror or type(exc).__name__)
        return 0


def worst_tile_box(result: Mapping[str, Any], sheet_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) of the worst slice's tile and caption on its sheet, or None.

    The same rule as ``contact_sheet``: the lowest of the result's slice scores, in selection order.
    """
    scores = [s if isinstance(s, (int, float)) and math.isfinite(s) else math.nan
              for s in result.get("slice_scores") or ()]
    if not scores or all(math.isnan(s) for s in scores):
        return None
    n = min((i for i, s in enumerate(scores) if not math.isnan(s)), key=lambda i: scores[i])
    cols = max(1, min(COLUMNS, len(scores)))
    row, col = divmod(n, cols)
    left, top = MARGIN + col * (TILE + MARGIN), TITLE_H + row * (TILE + CAPTION_H + MARGIN)
    box = (left, top, left + TILE, top + TILE + CAPTION_H)
    if box[2] > sheet_size[0] or box[3] > sheet_size[1]:
        return None  # not a sheet of this layout
    return box


class SheetWriter:
    """Draws sheets in one daemon thread, and prunes the folder every ``prune_every_s``.

    ``submit`` never blocks: with ``max_pending`` sheets waiting, a new one is dropped (and logged).
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, max_age_h: float = 72.0, max_mb: float = 500.0,
                 max_pending: int = 32, prune_every_s: float = 300.0) -> None:
        self.state_dir = Path(state_dir)
        self.max_age_h, self.max_mb = max_age_h, max_mb
        self._todo: queue.Queue[tuple[int, SheetSource, ResultLike] | None] = queue.Queue(max_pending)
        self._prune_every = prune_every_s
        self._last_prune = float("-inf")
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="mediqa-sheets", daemon=True)
        self._thread.start()

    def submit(self, result_id: int, source: SheetSource, result: ResultLike) -> bool:
        """Queue a sheet for a committed result (``source``: its layout, its records, or how to read them)."""
        if not result.selection.indices:
            return False
        try:
            self._todo.put_nowait((int(result_id), source, result))
            return True
        except queue.Full:
            log.warning("contact sheet of result %d dropped: %d sheets already waiting", int(result_id),
                        self._todo.maxsize)
            return False

    def pending(self) -> bool:
        """True while a sheet is queued or being drawn."""
        return self._todo.unfinished_tasks > 0

    def _run(self) -> None:
        while True:
            item = self._todo.get()
            if item is None:
                self._todo.task_done()
                return
            try:
                self._draw(*item)
            finally:
                self._todo.task_done()

    def _draw(self, result_id: int, source: SheetSource, result: ResultLike) -> None:
        try:
            if callable(source):
                source = source()
            layout = source if isinstance(source, SeriesLayout) else plan_series(list(source))
        except Exception as exc:  # noqa: BLE001 - a series that cannot be planned again: no sheet
            log.warning("contact sheet of result %d not written (%s)", result_id, type(exc).__name__)
            return
        if write_sheet(self.state_dir, result_id, layout, result) is not None:
            self.written += 1
        now = time.time()
        if now - self._last_prune >= self._prune_every:
            self._last_prune = now
            prune_sheets(sheets_dir(self.state_dir), self.max_age_h, self.max_mb, now)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the sheets already queued (up to ``timeout``), then stop the thread."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._todo.put(None, timeout=max(0.01, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
