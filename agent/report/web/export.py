"""The history as a table: filtered cards, the CSV download, and the worst slice's thumbnail.

The CSV is for a QA meeting's spreadsheet: one row per result, with the answers given. Cells that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first: a SeriesDescription can say anything)
are prefixed with an apostrophe. No identifier but the result's own id and uuid is exported.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from mediqa.agent.report.sheets import worst_tile_box
from mediqa.agent.report.web.reader import HistoryFilter

if TYPE_CHECKING:
    from mediqa.agent.report.web.app import ConsoleApp

log = logging.getLogger(__name__)

COLUMNS = ("result_id", "uuid", "time", "series_number", "description", "modality", "station", "decision", "score",
           "threshold", "where", "reasons", "notices", "latency_ms", "current", "feedback", "feedback_note",
           "feedback_initials", "feedback_time")


def filtered_cards(app: ConsoleApp, flt: HistoryFilter, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Cards of the results matching ``flt`` (newest first), and the modalities seen (for the filter)."""
    cards = app.cards(app.reader.history(flt, limit=limit))
    if flt.feedback == "none":
        cards = [c for c in cards if not c["feedback"]]
    elif flt.feedback == "any":
        cards = [c for c in cards if c["feedback"]]
    elif flt.feedback:
        cards = [c for c in cards if any(f["kind"] == flt.feedback for f in c["feedback"])]
    modalities = sorted({str(r[0]) for r in app.reader.query("SELECT DISTINCT modality FROM results") if r[0]})
    return cards, modalities


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_bytes(cards: Sequence[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for c in cards:
        last = c["feedback"][-1] if c.get("feedback") else {}
        when = c.get("time")
        writer.writerow([_cell(v) for v in (
            c["id"], c.get("uuid"), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "",
            c.get("series_number"), c.get("description"), c.get("modality"), c.get("station"), c["decision"],
            "" if c.get("score") is None else f"{c['score']:.2f}", c.get("threshold_text"), c.get("where"),
            "; ".join(c.get("reasons") or []), "; ".join(c.get("notices") or []),
            "" if c.get("latency_ms") is None else f"{c['latency_ms']:.0f}", "yes" if c.get("live") else "no",
            "; ".join(f["label"] for f in c.get("feedback") or []), last.get("note", ""), last.get("initials", ""),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["created"])) if last else "")])
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM makes spreadsheets read UTF-8


def thumbnail(sheet_png: bytes, result: Mapping[str, Any]) -> bytes:
    """The worst slice's tile cut from its contact sheet (the whole sheet when it cannot be found)."""
    try:
        with Image.open(io.BytesIO(sheet_png)) as img:
            box = worst_tile_box(result, img.size)
            if box is None:
                return sheet_png
            out = io.BytesIO()
            img.crop(box).save(out, format="PNG")
            return out.getvalue()
    except Exception as exc:  # noqa: BLE001 - a damaged picture: send it as it is
        log.warning("console: thumbnail not cut (%s)", type(exc).__name__)
        return sheet_png
