"""Real expert quality scores from a site: a CSV or YAML manifest, validated once, with clear errors.

Columns / keys: ``series`` (a path, relative to the manifest's folder or absolute) or ``series_uid``,
``score``, ``scale`` (``"0-4"``, ``"1-5"``...: the raters' scale), optional ``raters`` (how many
radiologists averaged into the score). Scores are rescaled to the 0..4 scale of the model, so a site's
own labels drop in without code changes. Every problem names the file, the row and the fix.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mediqa.errors import MediqaError

log = logging.getLogger(__name__)

COLUMNS = ("series", "series_uid", "score", "scale", "raters")
TARGET_SCALE = (0.0, 4.0)
_SCALE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|\.\.|to)\s*(-?\d+(?:\.\d+)?)\s*$")


class ExpertScoreError(MediqaError):
    """The expert-score manifest is malformed; the message names the row and what to fix."""


@dataclass(frozen=True)
class ExpertScore:
    """One series' expert score, on the raters' scale and rescaled to 0..4."""

    series: str | None  # absolute path of the series folder or file
    series_uid: str | None
    score: float
    scale: tuple[float, float]
    raters: int | None
    row: int  # 1-based data row in the manifest, for messages

    @property
    def score_0_4(self) -> float:
        lo, hi = self.scale
        return TARGET_SCALE[0] + (self.score - lo) / (hi - lo) * (TARGET_SCALE[1] - TARGET_SCALE[0])

    @property
    def key(self) -> str:
        return self.series_uid or self.series or ""


def load_expert_scores(path: str | Path) -> list[ExpertScore]:
    """Read and validate a ``.csv`` / ``.yaml`` / ``.yml`` manifest of expert scores."""
    path = Path(path)
    if not path.is_file():
        raise ExpertScoreError(f"expert-score manifest {path} not found", "check the path")
    rows = _read_rows(path)
    if not rows:
        raise ExpertScoreError(f"{path}: no scores found", "add one row per series")
    scores = [_parse_row(path, i, row) for i, row in enumerate(rows, start=1)]
    seen: dict[str, int] = {}
    for s in scores:
        if s.key in seen:
            raise ExpertScoreError(f"{path} row {s.row}: series '{s.key}' already scored in row {seen[s.key]}",
                                   "average the raters into one row and set 'raters'")
        seen[s.key] = s.row
    log.info("loaded %d expert scores from %s", len(scores), path.name)
    return scores


def _read_rows(path: Path) -> list[Mapping[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            _check_columns(path, reader.fieldnames or [])
            return [dict(r) for r in reader if any((v or "").strip() for v in r.values())]
    if suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ExpertScoreError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if isinstance(data, Mapping) and "scores" in data:
            data = data["scores"]
        if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
            raise ExpertScoreError(f"{path}: expected a list of mappings (or 'scores:' holding one)")
        for row in data:
            _check_columns(path, list(row))
        return list(data)
    raise ExpertScoreError(f"{path}: unknown manifest type '{suffix}'", "use .csv, .yaml or .yml")


def _check_columns(path: Path, names: Sequence[str]) -> None:
    for name in names:
        if name not in COLUMNS:
            near = difflib.get_close_matches(str(name), COLUMNS, n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"valid columns: {', '.join(COLUMNS)}"
            raise ExpertScoreError(f"{path}: unknown column '{name}'", hint)
    if "score" not in names or "scale" not in names:
        raise ExpertScoreError(f"{path}: columns 'score' and 'scale' are required", "add them to the header")


def _parse_row(path: Path, row: int, data: Mapping[str, Any]) -> ExpertScore:
    where = f"{path} row {row}"
    series = _text(data.get("series"))
    uid = _text(data.get("series_uid"))
    if not series and not uid:
        raise ExpertScoreError(f"{where}: neither 'series' nor 'series_uid' given", "name the series")
    scale = _parse_scale(where, data.get("scale"))
    score = _number(where, "score", data.get("score"))
    if not scale[0] <= score <= scale[1]:
        raise ExpertScoreError(f"{where}: score {score:g} outside its scale {scale[0]:g}-{scale[1]:g}",
                               "fix the score or the scale")
    raters = data.get("raters")
    n_raters: int | None = None
    if _text(raters):
        value = _number(where, "raters", raters)
        if value < 1 or value != int(value):
            raise ExpertScoreError(f"{where}: raters must be a whole number >= 1, got {raters!r}")
        n_raters = int(value)
    if series and not Path(series).is_absolute():
        series = str((path.parent / series).resolve())
    return ExpertScore(series or None, uid or None, score, scale, n_raters, row)


def _parse_scale(where: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = (_number(where, "scale", v) for v in value)
    else:
        match = _SCALE.match(_text(value))
        if not match:
            raise ExpertScoreError(f"{where}: scale {value!r} is not 'low-high'", "write e.g. 0-4 or 1-5")
        lo, hi = float(match.group(1)), float(match.group(2))
    if hi <= lo:
        raise ExpertScoreError(f"{where}: scale {lo:g}-{hi:g} must go from low to high")
    return lo, hi


def _number(where: str, name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExpertScoreError(f"{where}: {name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ExpertScoreError(f"{where}: {name} must be finite, got {value!r}")
    return number


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()
