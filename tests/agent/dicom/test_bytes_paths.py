"""File and folder names that are not UTF-8: Python sees them as str with surrogate escapes (os.fsdecode).

A console's export can hold such names (Latin-1 patient folders copied from an old PACS). Every step
from the walk to the pixels must take them as they are, and nothing may log them undecodably.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from mediqa.agent.dicom.decode import decode_downsampled, decode_record_downsampled
from mediqa.agent.dicom.index import read_header, scan_tree
from mediqa.agent.dicom.records import record_from_json, record_to_json
from mediqa.agent.dicom.volume import plan_series
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.watch.walk import walk_files

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes")

FOLDER = os.fsdecode(b"DOE\xe9\xff")  # a Latin-1 e-acute and a byte no encoding maps
NAMES = [os.fsdecode(b"\xff\xfe.dcm"), os.fsdecode(b"IM\xe9%d") , os.fsdecode(b"\x80\x81")]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    write_phantom_ct(tmp_path / "src", noise_hu=4.0, seed=0, slices=3, size=32)
    folder = tmp_path / "export" / FOLDER
    folder.mkdir(parents=True)
    for name, src in zip(NAMES, sorted((tmp_path / "src").iterdir()), strict=True):
        os.rename(src, folder / name.replace("%d", "1"))
    (folder / os.fsdecode(b"notes\xff.txt")).write_bytes(b"not a dicom file" * 20)
    return tmp_path / "export"


def _messages_encodable(caplog: pytest.LogCaptureFixture) -> None:
    for rec in caplog.records:
        rec.getMessage().encode("utf-8")  # a surrogate in a log line breaks a UTF-8 log file or journal


def test_walk_read_plan_and_decode_take_undecodable_names(export, caplog):
    caplog.set_level(logging.DEBUG)
    paths = list(walk_files(export))
    assert len(paths) == 4 and all(FOLDER in p for p in paths)
    records = []
    for p in paths:
        assert os.path.exists(p)
        if p.endswith(".txt"):
            continue
        records.append(read_header(p))
    assert {r.path for r in records} == {p for p in paths if not p.endswith(".txt")}
    layout = plan_series(records)
    pixels = layout.read_slices(range(layout.n_slices))
    assert pixels.shape == (3, 32, 32)
    assert len(decode_downsampled(layout, range(layout.n_slices), 16)) == 3
    assert len(decode_record_downsampled(records[0], 16)) == 1
    _messages_encodable(caplog)


def test_scan_tree_logs_skips_of_undecodable_names_printably(export, caplog):
    caplog.set_level(logging.DEBUG)
    skipped: dict[str, str] = {}
    (records,) = scan_tree(export, skipped=skipped).values()
    assert len(records) == 3 and list(skipped.values()) == ["not_dicom"]
    assert "notes" in caplog.text
    _messages_encodable(caplog)


def test_record_json_round_trip_keeps_the_exact_path(export):
    path = next(p for p in walk_files(export) if not p.endswith(".txt"))
    record = read_header(path)
    text = record_to_json(record)
    text.encode("ascii")  # surrogates are written as \\udcXX escapes: any database can store the text
    back = record_from_json(text)
    assert back == record and back.path == path and os.fsencode(back.path) == os.fsencode(path)
    assert record_from_json(text.encode("ascii")) == record
    assert json.loads(text)["path"] == path


def test_unreadable_undecodable_folder_is_logged_printably(export, monkeypatch, caplog):
    locked = export / FOLDER / os.fsdecode(b"lock\xff")
    locked.mkdir()
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith(os.fsdecode(b"lock\xff")):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    caplog.set_level(logging.WARNING)
    assert len(list(walk_files(export))) == 4
    assert "cannot list folder" in caplog.text
    _messages_encodable(caplog)
