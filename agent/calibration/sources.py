"""What calibration reads: scored series (state DB, results.jsonl, backfill Parquet) and feedback labels.

Labels come from the technologists' answers at the console (the ``feedback`` table, agent/report/feedback.py):

- ``rescanned``, ``should_have_alerted``: **bad**, the series should alert (it was redone, or it was
  bad and the agent said ok);
- ``false_alert``, ``accepted``: **good**, it should not alert (the images were kept as they were);
- ``seen``: unlabelled (an acknowledgement that says nothing about quality).

A series answered more than once counts with its latest labelled answer. Its score is the one of the
result that was answered (what the technologist judged), unless results files are given: then their
scores (a backfill with today's model, say) are labelled by series UID. Unscored and skipped series have
no score to put a threshold on and are left out (counted). Series UIDs are used to join, never printed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mediqa.agent.config_thresholds import protocol_key
from mediqa.agent.report.feedback import Feedback, feedback_after
from mediqa.agent.report.store import ResultStore
from mediqa.agent.state.db import StateDB
from mediqa.errors import MediqaError

LABELS: Mapping[str, str | None] = {
    "rescanned": "bad", "should_have_alerted": "bad", "false_alert": "good", "accepted": "good", "seen": None,
}
SCORED = ("ok", "retake")


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    modality: str
    series_description: str
    anatomy: str
    score: float
    decision: str
    worst: float | None  # the worst slice's score
    worst_slice_below: float | None  # the worst-slice limit that applied
    threshold_source: str  # which threshold applied ("modality CT", "rule diffusion", ...)
    model: str  # model name and hash prefix: scores of different models are not comparable
    origin: str  # state, jsonl or parquet
    station: str = ""
    shown: bool = True  # shown to a technologist (the agent's own results; a backfill was not)
    label: str | None = None  # bad, good, or None
    answer: str = ""  # the feedback kind the label came from

    @property
    def protocol(self) -> str:
        return protocol_key(self.modality, self.series_description, self.anatomy)

    @property
    def forced(self) -> bool:
        """Alerted by its worst slice, whatever the series threshold."""
        return self.worst is not None and self.worst_slice_below is not None and self.worst < self.worst_slice_below


@dataclass(frozen=True)
class Label:
    label: str
    answer: str
    result_id: int
    conflicting: bool  # an earlier answer said the opposite


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def row_from_result(result: Mapping[str, Any], origin: str, *, shown: bool = True) -> SeriesRow | None:
    """A scored series from a result as the agent writes it (``SeriesResult.to_json``); None if not scored."""
    score = _number(result.get("score"))
    decision = str(result.get("decision") or "")
    uid = str(result.get("series_uid") or "")
    if score is None or decision not in SCORED or not uid:
        return None
    worst = result.get("worst_slice")
    threshold = _mapping(result.get("threshold"))
    prompt = _mapping(result.get("prompt"))
    sha = str(result.get("model_sha256") or "")
    return SeriesRow(
        series_uid=uid, modality=str(result.get("modality") or ""),
        series_description=str(result.get("series_description") or ""),
        anatomy=str(prompt.get("anatomy") or result.get("anatomy") or ""), score=score, decision=decision,
        worst=_number(worst.get("score")) if isinstance(worst, Mapping) else _number(result.get("worst_slice_score")),
        worst_slice_below=_number(threshold.get("worst_slice_below", result.get("worst_slice_below"))),
        threshold_source=str(threshold.get("source") or result.get("threshold_source") or ""),
        model=" ".join(p for p in (str(result.get("model_name") or result.get("scorer") or ""), sha[:12]) if p),
        origin=origin, station=str(result.get("station") or result.get("station_name") or ""), shown=shown)


def all_feedback(db: StateDB) -> list[Feedback]:
    out: list[Feedback] = []
    while batch := feedback_after(db, out[-1].id if out else 0, limit=5000):
        out.extend(batch)
    return out


def labels_by_series(feedback: Iterable[Feedback], series_of: Mapping[int, str]) -> dict[str, Label]:
    """The latest labelled answer of each series (``seen`` and unknown kinds label nothing)."""
    labels: dict[str, Label] = {}
    for fb in sorted(feedback, key=lambda f: f.id):
        label = LABELS.get(fb.kind)
        uid = fb.series_uid or series_of.get(fb.result_id)
        if label is None or not uid:
            continue
        before = labels.get(uid)
        conflicting = before is not None and (before.conflicting or before.label != label)
        labels[uid] = Label(label, fb.kind, fb.result_id, conflicting)
    return labels


@dataclass(frozen=True)
class StateData:
    rows: list[SeriesRow]  # one per scored series: the answered result, else the live one
    labels: dict[str, Label]
    results: int  # result rows read
    not_scored: int  # series whose result has no score (unscored, skipped)


def read_state(db: StateDB, jsonl: Path) -> StateData:
    history = [r for r in ResultStore(db, jsonl).history() if r.get("origin") != "rescored"]
    by_id = {int(r["result_id"]): r for r in history}
    labels = labels_by_series(all_feedback(db), {i: str(r.get("series_uid") or "") for i, r in by_id.items()})
    chosen: dict[str, Mapping[str, Any]] = {}
    for r in history:  # in id order: the last one of a series is its newest
        chosen[str(r.get("series_uid") or "")] = r
    for uid, lab in labels.items():
        if lab.result_id in by_id:
            chosen[uid] = by_id[lab.result_id]
    rows, not_scored = [], 0
    for result in sorted(chosen.values(), key=lambda r: int(r["result_id"])):
        row = row_from_result(result, "state")
        if row is None:
            not_scored += 1
        else:
            rows.append(row)
    return StateData(attach_labels(rows, labels), labels, len(history), not_scored)


def attach_labels(rows: Sequence[SeriesRow], labels: Mapping[str, Label]) -> list[SeriesRow]:
    return [replace(r, label=labels[r.series_uid].label, answer=labels[r.series_uid].answer)
            if r.series_uid in labels else r for r in rows]


def count_unanswered_ok_as_good(rows: Sequence[SeriesRow]) -> list[SeriesRow]:
    """An ok series shown to a technologist who did not flag it counts as good (``--unanswered-ok-as-good``)."""
    return [replace(r, label="good", answer="unanswered ok")
            if r.label is None and r.decision == "ok" and r.shown else r for r in rows]


def read_jsonl(path: Path) -> tuple[list[SeriesRow], int]:
    """The last line of each series in an agent's results.jsonl (its live result); and how many were not scored."""
    last: dict[str, Mapping[str, Any]] = {}
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    continue  # a torn last line, or not ours
                if isinstance(obj, dict) and obj.get("series_uid"):
                    last.pop(str(obj["series_uid"]), None)  # keep file order by each series' newest line
                    last[str(obj["series_uid"])] = obj
    except OSError as exc:
        raise MediqaError(f"results file {path} cannot be read ({exc.strerror})", "check the path") from None
    return _rows(last.values(), "jsonl", shown=True)


def read_parquet(path: Path) -> tuple[list[SeriesRow], int]:
    """Backfill results (a Parquet file, or a ``--out`` folder: docs/backfill.md), the newest row per series.

    Files without the result columns (a backfill's ``skipped_files.parquet``) are not results and are passed
    over; a resumed backfill may hold a series more than once, and the latest ``scored_at`` counts.
    """
    import importlib

    try:  # by name: pyarrow is optional and ships no type hints
        pq = importlib.import_module("pyarrow.parquet")
    except ModuleNotFoundError:
        raise MediqaError(f"{path}: reading backfill Parquet results needs pyarrow",
                          "pip install pyarrow (mediqa backfill's extra has it), or pass results.jsonl") from None
    records: list[Mapping[str, Any]] = []
    for file in sorted(path.rglob("*.parquet")) if path.is_dir() else [path]:
        try:
            if not {"series_uid", "score"} <= set(pq.read_schema(file).names):
                continue
            records.extend(pq.read_table(file).to_pylist())
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise MediqaError(f"{file} cannot be read as Parquet ({' '.join(str(exc).split())[:200]})") from None
    records.sort(key=lambda r: float(r.get("scored_at") or 0.0))
    newest: dict[str, Mapping[str, Any]] = {}
    for rec in _parquet_results(records):
        newest.pop(str(rec.get("series_uid")), None)  # keep order by each series' newest row
        newest[str(rec.get("series_uid"))] = rec
    return _rows(newest.values(), "parquet", shown=False)


def _parquet_results(records: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Backfill rows as results: a full result in a JSON column when there is one, else the flat columns."""
    for rec in records:
        for column in ("result_json", "json"):
            try:
                result = json.loads(rec[column]) if isinstance(rec.get(column), str) else None
            except ValueError:
                result = None
            if isinstance(result, dict):
                result.setdefault("station", rec.get("station") or rec.get("station_name") or "")
                yield result
                break
        else:
            description = next((str(rec[c]) for c in ("series_description", "description", "protocol_name",
                                                       "protocol") if rec.get(c)), "")
            yield {**rec, "series_description": description}


def _rows(results: Iterable[Mapping[str, Any]], origin: str, *, shown: bool) -> tuple[list[SeriesRow], int]:
    rows, not_scored = [], 0
    for result in results:
        row = row_from_result(result, origin, shown=shown)
        if row is None:
            not_scored += 1
        else:
            rows.append(row)
    return rows, not_scored


def read_results(path: Path) -> tuple[list[SeriesRow], int]:
    """A results file by its kind: ``.jsonl`` lines, else Parquet (a file or a backfill's --out folder)."""
    if not path.exists():
        raise MediqaError(f"results path {path} does not exist", "pass results.jsonl or a backfill --out folder")
    if path.is_file() and path.suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path)
    if path.is_dir() and not any(path.rglob("*.parquet")):
        raise MediqaError(f"{path} holds no .parquet files", "pass a backfill --out folder or a results.jsonl")
    return read_parquet(path)


def one_model(rows: Sequence[SeriesRow]) -> tuple[list[SeriesRow], str, int]:
    """The rows of the newest row's model (scores of different models are not comparable); and how many
    rows of other models were left out."""
    if not rows:
        return [], "", 0
    model = rows[-1].model
    kept = [r for r in rows if r.model == model]
    return kept, model, len(rows) - len(kept)
