"""Header text in records is one printable line, whatever built the record (reader, JSON, replace)."""

from __future__ import annotations

from dataclasses import replace

from mediqa.agent.dicom.records import (
    TEXT_LIMIT,
    InstanceRecord,
    clean_text,
    record_from_json,
    record_to_json,
    series_key,
)


def _record(**kw) -> InstanceRecord:
    base = {"path": "/export/a", "size": 1, "mtime_ns": 1, "sop_instance_uid": "1.2.3.1", "series_uid": "1.2.3",
            "study_uid": "1.2", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
            "transfer_syntax": "1.2.840.10008.1.2.1", "modality": "CT"}
    return InstanceRecord(**{**base, **kw})


def test_clean_text_removes_what_forges_console_lines():
    assert clean_text("Head\x1b[2J\x1b[31mALERT\r\nok\x07") == "Head [2J [31mALERT  ok"
    assert clean_text("a\x85b\u2028c\u202ed\u2066e\x7f") == "a b c d e"
    assert clean_text("\udcff\udcfe name") == "\ufffd\ufffd name"
    assert clean_text("x" * 500) == "x" * TEXT_LIMIT
    assert clean_text("  Thorax 1.5  B30f ") == "Thorax 1.5  B30f"
    assert clean_text("Séries tête 頭部") == "Séries tête 頭部"  # printable non-ASCII text is kept
    for text in ("a\x1bb", "x" * 300, "\udcff", " p "):
        assert clean_text(clean_text(text)) == clean_text(text)


def test_records_clean_their_text_on_every_construction():
    rec = _record(series_description="T2\x1b[K\r\nFAKE", image_type=("ORIGINAL", "AXIAL\r"), body_part="x" * 300,
                  convolution_kernel=tuple(f"K{i}" for i in range(100)))
    assert rec.series_description == "T2 [K  FAKE" and rec.image_type == ("ORIGINAL", "AXIAL")
    assert len(rec.body_part) == TEXT_LIMIT and len(rec.convolution_kernel) == 32
    assert replace(rec, protocol_name="\x1b]0;x\x07").protocol_name == "]0;x"
    assert record_from_json(record_to_json(rec)) == rec
    raw = record_to_json(rec).replace("T2 [K  FAKE", "T2\\u001b[K")  # a stored row written before the fix
    assert record_from_json(raw).series_description == "T2 [K"


def test_the_path_is_kept_exactly():
    path = "/export/\udcffDOE\r\n/IM1"
    assert _record(path=path).path == path


def test_series_key_of_any_string():
    assert series_key("1.2.3") == series_key("1.2.3") and series_key("1.2.\udcff").startswith("s-")
