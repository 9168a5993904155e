"""Discovery: a parallel header scan (the agent's own ``read_header``), then the agent's grouping by series.

``read_headers`` is the one batch function both executors map over chunks of paths; it never raises
(a bad file is a ``DicomSkip`` reason in its row). ``group_series`` keeps the walk order within each series,
as ``agent.dicom.index.scan_tree`` does, so a series is planned from the same records as ``mediqa score``.
Records travel as JSON (``record_to_json``): plain data between processes, never pickles of our classes,
and compact while the driver holds them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mediqa.agent.config import AgentConfig
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord, record_from_dict, record_to_json
from mediqa.agent.report.privacy import clean_text, file_key
from mediqa.agent.watch.walk import walk_files
from mediqa.errors import DicomSkip

log = logging.getLogger(__name__)

HeaderRow = dict[str, Any]  # path, series_uid, record (JSON or ""), skip ("" or the reason)


def list_files(root: str | os.PathLike[str], config: AgentConfig) -> list[str]:
    """Every file under ``root`` in the agent's walk order (same depth limit and link rule)."""
    return list(walk_files(root, max_depth=config.watch.max_depth, follow_links=config.watch.follow_links))


def read_headers(paths: Iterable[str], config: AgentConfig) -> list[HeaderRow]:
    """One row per path: its record as JSON, or the reason it was skipped. Never raises for a file."""
    ingest = config.ingest
    rows: list[HeaderRow] = []
    for path in paths:
        try:
            rec = read_header(path, skip_derived=ingest.skip_derived, skip_localizers=ingest.skip_localizers,
                              limits=ingest.limits)
        except DicomSkip as skip:
            rows.append({"path": path, "series_uid": skip.series_uid or "", "record": "", "skip": skip.reason})
            continue
        rows.append({"path": path, "series_uid": rec.series_uid, "record": record_to_json(rec), "skip": ""})
    return rows


def station_name(path: str) -> str:
    """StationName of one file of a series (the agent's records do not carry it): '' when absent."""
    import pydicom

    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=["StationName"])
        return clean_text(str(ds.get("StationName", "") or ""), 64)
    except Exception as exc:  # noqa: BLE001 - the station is a label: a file that breaks here has none
        log.debug("no station name: %s", type(exc).__name__)
        return ""


@dataclass(frozen=True)
class SeriesTask:
    """One series to score: its records in walk order and the station that made it (read by the worker)."""

    series_uid: str
    records: tuple[InstanceRecord, ...]
    station: str = ""

    @staticmethod
    def from_row(row: Mapping[str, Any]) -> SeriesTask:
        """From what crosses into a worker: plain strings, the records as one JSON array (``Discovery``)."""
        import json

        records = tuple(record_from_dict(item) for item in json.loads(str(row["records"])))
        return SeriesTask(str(row["series_uid"]), records, str(row.get("station") or ""))


@dataclass
class Discovery:
    """What the scan found: each series' records as one JSON array, in first-seen order (the driver holds
    every series between the scan and the scoring: one compact string each, parsed only by the worker, or
    for the summary's few contact sheets), and the files it skipped, by pseudonymous key."""

    series: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)  # file_key, series_uid, reason
    files: int = 0

    def task_row(self, series_uid: str) -> dict[str, str]:
        return {"series_uid": series_uid, "station": "", "records": self.series[series_uid]}

    def records(self, series_uid: str) -> list[InstanceRecord] | None:
        text = self.series.get(series_uid)
        return list(SeriesTask.from_row(self.task_row(series_uid)).records) if text else None


def group_series(rows: Sequence[HeaderRow]) -> Discovery:
    """Group header rows (in walk order) by SeriesInstanceUID, as ``scan_tree`` does."""
    found = Discovery(files=len(rows))
    grouped: dict[str, list[str]] = {}
    for row in rows:
        if row["skip"]:
            found.skipped.append({"file_key": file_key(row["path"]), "series_uid": row["series_uid"],
                                  "reason": row["skip"]})
            continue
        grouped.setdefault(row["series_uid"], []).append(row["record"])
    found.series = {uid: "[" + ",".join(texts) + "]" for uid, texts in grouped.items()}
    return found


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
