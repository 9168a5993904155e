"""The results directory: Parquet parts with one row per series, written atomically by the driver.

``<out>/results/part-<run>-<n>.parquet`` holds rows of ``SCHEMA`` (docs/backfill.md): the flat columns that
``mediqa calibrate`` and a dataframe read, plus ``result_json``, the exact object the agent writes to
results.jsonl (``SeriesResult.to_json``). A part is written to a temporary name and renamed, so a killed run
leaves whole parts only; a series is done when a row with its key (series UID, model SHA-256, config
digest) is in a part. Skipped files go to ``<out>/skipped_files.parquet`` by pseudonymous file key.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from mediqa.agent.scoring.base import SeriesResult
    from mediqa.backfill.scan import SeriesTask

SCHEMA = pa.schema([
    ("series_uid", pa.string()), ("series_key", pa.string()), ("modality", pa.string()),
    ("series_number", pa.int64()), ("series_description", pa.string()), ("protocol_name", pa.string()),
    ("body_part", pa.string()), ("manufacturer", pa.string()), ("station", pa.string()),
    ("instances", pa.int64()), ("slices", pa.int64()),
    ("score", pa.float64()), ("decision", pa.string()), ("reasons", pa.list_(pa.string())),
    ("worst_slice_rank", pa.int64()), ("worst_slice_score", pa.float64()), ("worst_slice_position_mm", pa.float64()),
    ("slice_scores", pa.list_(pa.float64())), ("retake_below", pa.float64()),
    ("scorer", pa.string()), ("backend", pa.string()), ("model_name", pa.string()), ("model_version", pa.string()),
    ("model_sha256", pa.string()), ("agent_version", pa.string()), ("config_digest", pa.string()),
    ("processing_ms", pa.float64()), ("scored_at", pa.float64()), ("run_id", pa.string()),
    ("result_json", pa.string()),
])
SKIPS_SCHEMA = pa.schema([("file_key", pa.string()), ("series_uid", pa.string()), ("reason", pa.string())])
KEY_COLUMNS = ("series_uid", "model_sha256", "config_digest")


def result_row(result: SeriesResult, task: SeriesTask, digest: str, run_id: str) -> dict[str, Any]:
    """One Parquet row: the agent's JSON fields (same rounding as results.jsonl) plus backfill's own."""
    data = result.to_json()
    first = task.records[0] if task.records else None
    worst = data.get("worst_slice") or {}
    threshold = data.get("threshold") or {}
    retake = threshold.get("retake_below")
    return {
        "series_uid": data["series_uid"], "series_key": data["series_key"], "modality": data["modality"],
        "series_number": data["series_number"], "series_description": data["series_description"],
        "protocol_name": first.protocol_name if first else "", "body_part": first.body_part if first else "",
        "manufacturer": first.manufacturer if first else "", "station": task.station,
        "instances": data["instances"], "slices": data["slices"], "score": data["score"],
        "decision": data["decision"], "reasons": data["reasons"], "worst_slice_rank": worst.get("rank"),
        "worst_slice_score": worst.get("score"), "worst_slice_position_mm": worst.get("position_mm"),
        "slice_scores": data["slice_scores"],
        "retake_below": float(retake) if isinstance(retake, (int, float)) and math.isfinite(retake) else None,
        "scorer": data["scorer"], "backend": data["backend"], "model_name": data["model_name"],
        "model_version": data["model_version"], "model_sha256": data["model_sha256"] or "",
        "agent_version": data["agent_version"], "config_digest": digest, "processing_ms": data["processing_ms"],
        "scored_at": time.time(), "run_id": run_id, "result_json": json.dumps(data, sort_keys=True),
    }


def to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


class ResultsDir:
    """``<out>/results``: whole Parquet parts only; the keys already done; every row back."""

    def __init__(self, out: Path, run_id: str | None = None) -> None:
        self.out = out
        self.parts = out / "results"
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._written = 0

    def write(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """One part, atomically (temporary name, fsync, rename)."""
        if not rows:
            return None
        self.parts.mkdir(parents=True, exist_ok=True)
        final = self.parts / f"part-{self.run_id}-{self._written:05d}.parquet"
        tmp = final.with_name("." + final.name + ".tmp")
        pq.write_table(to_table(rows), tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self._written += 1
        return final

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One run per results folder at a time (two would both score what neither had written yet)."""
        from mediqa.errors import MediqaError

        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / ".backfill.lock", "a+b") as fh:
            try:
                import fcntl
            except ImportError:  # Windows: no advisory lock; one run at a time is then the user's to keep
                yield
                return
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MediqaError(f"another mediqa backfill is writing to {self.out}",
                                  "wait for it to finish, or give this run another --out") from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def table(self, columns: Iterable[str] | None = None) -> pa.Table:
        """Every row of every part (an empty table of the schema when there is none)."""
        cols = list(columns) if columns is not None else None
        files = self.part_files()
        if not files:
            return SCHEMA.empty_table().select(cols) if cols else SCHEMA.empty_table()
        return pa.concat_tables([pq.read_table(f, columns=cols, schema=SCHEMA) for f in files])

    def done_keys(self) -> set[tuple[str, str, str]]:
        t = self.table(KEY_COLUMNS).to_pydict()
        return set(zip(t["series_uid"], t["model_sha256"], t["config_digest"], strict=True))

    def write_skips(self, skipped: Sequence[Mapping[str, str]]) -> Path:
        path = self.out / "skipped_files.parquet"
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(list(skipped), schema=SKIPS_SCHEMA), tmp)
        os.replace(tmp, path)
        return path
