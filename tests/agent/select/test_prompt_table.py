"""The prompt rules against every real series header the project has, expected prompts written down.

The table (``prompt_table.tsv`` beside this file) holds one row per real series: the shared dcm2niix
QA series and pydicom's / pydicom-data's CT and MR test files. Each row says whether the series is
scored and which prompt a reader of its headers would write down; a new shared series must be added.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import pytest

from mediqa.agent.config import SKIP_KINDS
from mediqa.agent.dicom.index import read_header, scan_tree
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import plan_series
from mediqa.agent.select.prompts import prompt_for
from mediqa.agent.select.skips import split_for_scoring
from mediqa.errors import DicomSkip

TABLE = Path(__file__).with_name("prompt_table.tsv")
COLUMNS = ("verdict", "dimension", "modality", "anatomy", "image_type")


def _rows(source: str) -> dict[str, dict[str, str]]:
    lines = [line for line in TABLE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    return {r["path"]: r for r in rows if r["source"] == source}


def _verdict(records: list[InstanceRecord]) -> str:
    """The series skip kind when there is one, else the reader's skip of its first file, else scored."""
    _, skip, _ = split_for_scoring(records, SKIP_KINDS)
    if skip is not None:
        return f"skipped {skip.kind}"
    try:
        read_header(records[0].path)
    except DicomSkip as exc:
        return f"skipped {exc.reason}"
    return "scored"


def _got(records: list[InstanceRecord]) -> dict[str, str]:
    return {"verdict": _verdict(records), **prompt_for(plan_series(records))}


def _wrong(expected: dict[str, str], got: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {c: (expected[c], got[c]) for c in COLUMNS if expected[c] != got[c]}


@pytest.mark.slow  # indexes ../shared again with skipped files let through (the scored ones: test_prompts.py)
@pytest.mark.shared_data
def test_every_shared_series_header(shared_dicom: Path) -> None:
    series = scan_tree(shared_dicom, skip_derived=False, skip_localizers=False)
    found = {os.path.dirname(os.path.relpath(min(r.path for r in recs), shared_dicom)): recs
             for recs in series.values()}
    rows = _rows("shared")
    assert set(found) == set(rows), "a shared series was added or removed: extend prompt_table.tsv"
    wrong = {name: w for name, recs in found.items() if (w := _wrong(rows[name], _got(recs)))}
    assert not wrong, wrong


def test_every_pydicom_series_header() -> None:
    from pydicom.data import get_testdata_file

    rows = _rows("pydicom")
    wrong, missing = {}, []
    for name, row in rows.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom-data warns when it cannot download (offline): a miss
            path = get_testdata_file(name)
        if path is None:
            missing.append(name)
            continue
        record = read_header(path, skip_derived=False, skip_localizers=False)
        if w := _wrong(row, _got([record])):
            wrong[name] = w
    assert not wrong, wrong
    if len(missing) == len(rows):
        pytest.skip("no pydicom test file found (pydicom-data not installed?)")
