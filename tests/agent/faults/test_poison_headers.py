"""Poison headers: whatever a file holds, ``read_header`` returns a record or raises ``DicomSkip``, fast.

Each poison is generated from a good phantom (``poison.py``). Malformed values become
``malformed_header`` (never retried), absurd sizes become ``header_limits`` (naming the config key)
before anything is allocated, and header text reaches the record without control characters.
"""

from __future__ import annotations

import struct
import time
from dataclasses import fields
from pathlib import Path

import pydicom
import pytest
from poison import CONTROL_TEXT, CT_HEADER_POISONS, control_characters, enhanced_header_poisons

from mediqa.agent.config import HeaderLimits
from mediqa.agent.dicom import index
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.errors import DicomSkip

CT_CASES = sorted(CT_HEADER_POISONS)


def _poisoned(tmp_path: Path, good: Path, make, name: str) -> Path:
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(make(good.read_bytes()))
    return path


def _expect_skip(path: Path, reason: str, limits: HeaderLimits | None = None) -> DicomSkip:
    started = time.perf_counter()
    with pytest.raises(DicomSkip) as exc:
        read_header(path, limits=limits) if limits is not None else read_header(path)  # None: the defaults
    assert time.perf_counter() - started < 2.0, "a poison must be refused fast"
    skip = exc.value
    assert skip.reason == reason, str(skip)
    assert str(path) not in str(skip) and path.name not in skip.detail  # export paths carry patient names
    assert len(skip.detail) <= 200
    return skip


@pytest.mark.slow
@pytest.mark.usefixtures("memory_cap")
@pytest.mark.parametrize("name", CT_CASES)
def test_ct_header_poison_is_a_recorded_skip(tmp_path, ct_files, name):
    make, reason = CT_HEADER_POISONS[name]
    skip = _expect_skip(_poisoned(tmp_path, ct_files[0], make, name), reason)
    assert not skip.retry  # the file is complete: reading it again gives the same answer
    if reason == "header_limits":  # the detail names what is wrong (and the config key, for a limit)
        assert any(word in skip.detail for word in ("Rows", "Columns", "NumberOfFrames", "BitsAllocated",
                                                     "SamplesPerPixel", "pixel data")), skip.detail
        assert "ingest.limits." in skip.detail or " is not " in skip.detail or "holds" in skip.detail


@pytest.mark.usefixtures("memory_cap")
@pytest.mark.parametrize("name", sorted(enhanced_header_poisons()))
def test_enhanced_header_poison_is_a_recorded_skip(tmp_path, enhanced_file, name):
    make, reason = enhanced_header_poisons()[name]
    good_uid = str(pydicom.dcmread(enhanced_file, stop_before_pixels=True).SeriesInstanceUID)
    skip = _expect_skip(_poisoned(tmp_path, enhanced_file, make, name), reason)
    if reason == "malformed_header":
        assert skip.series_uid == good_uid  # the series' result can count this image as unreadable


def test_malformed_value_names_its_series(tmp_path, ct_files):
    make, _ = CT_HEADER_POISONS["unknown_vr_body_part"]
    uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).SeriesInstanceUID)
    skip = _expect_skip(_poisoned(tmp_path, ct_files[0], make, "vr"), "malformed_header")
    assert skip.series_uid == uid
    assert "BodyPartExamined" in skip.detail or "0018,0015" in skip.detail or "ZZ" in skip.detail


@pytest.mark.usefixtures("memory_cap")
def test_frame_count_message_names_the_config_key(tmp_path, ct_files):
    make, _ = CT_HEADER_POISONS["frames_2e9"]
    skip = _expect_skip(_poisoned(tmp_path, ct_files[0], make, "nf"), "header_limits")
    assert skip.detail == "NumberOfFrames 2000000000 > 5000 (ingest.limits.max_frames)"


def test_limits_come_from_the_config(tmp_path, ct_files):
    assert read_header(ct_files[0], limits=HeaderLimits()).rows == 96
    skip = _expect_skip(ct_files[0], "header_limits", HeaderLimits(max_rows=64))
    assert skip.detail == "Rows 96 > 64 (ingest.limits.max_rows)"
    skip = _expect_skip(ct_files[0], "header_limits", HeaderLimits(max_pixel_bytes=1000))
    assert "(ingest.limits.max_pixel_bytes)" in skip.detail
    skip = _expect_skip(ct_files[0], "header_limits", HeaderLimits(max_bits_allocated=8))
    assert skip.detail == "BitsAllocated 16 > 8 (ingest.limits.max_bits_allocated)"


@pytest.mark.parametrize("error", [NotImplementedError("codec"), MemoryError(), RecursionError("deep"),
                                   OverflowError("big"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                                   ValueError("v"), KeyError("k"), AttributeError("a"), ZeroDivisionError()])
def test_any_exception_while_building_the_record_is_malformed_header(tmp_path, ct_files, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(index, "_frames", broken)  # the record is being built: the header parsed fine
    uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).SeriesInstanceUID)
    skip = _expect_skip(ct_files[0], "malformed_header")
    assert skip.series_uid == uid and not skip.retry
    assert type(error).__name__ in skip.detail


@pytest.mark.parametrize("error", [NotImplementedError("x"), MemoryError(), RecursionError(), OverflowError("o")])
def test_any_exception_while_parsing_is_malformed_header(tmp_path, ct_files, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(pydicom, "dcmread", broken)
    monkeypatch.setattr(index, "scan_header", broken)  # the fast walk first, then pydicom: both break
    skip = _expect_skip(ct_files[0], "malformed_header")
    assert skip.series_uid is None


@pytest.mark.parametrize("error", [RecursionError(), MemoryError(), struct.error("short"), ValueError("v")])
def test_a_walk_that_breaks_leaves_the_file_to_pydicom(ct_files, monkeypatch, error):
    expected = read_header(ct_files[0], scanner=False)

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(index, "scan_header", broken)
    assert read_header(ct_files[0]) == expected


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_not_swallowed(ct_files, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error()

    monkeypatch.setattr(index, "_frames", broken)
    with pytest.raises(error):
        read_header(ct_files[0])


def test_lenient_values_still_make_a_record(tmp_path, ct_files):
    """A non-numeric InstanceNumber is not worth losing the image for: the record has no instance number."""
    from poison import patch_element

    path = tmp_path / "is.dcm"
    path.write_bytes(patch_element(ct_files[0].read_bytes(), (0x0020, 0x0013), "IS", new_value=b"XX"))
    record = read_header(path)
    assert record.instance_number is None and record.rows == 96


def test_rescale_zero_is_kept_for_the_planner_to_refuse(tmp_path, ct_files):
    """A slope of 0 is not "missing": it must reach plan_series (which refuses it), not become 1.0."""
    from poison import with_changes

    record = read_header(with_changes(ct_files[0], tmp_path / "zero.dcm", RescaleSlope=0))
    assert record.frames[0].rescale_slope == 0.0


def test_fifo_is_not_opened(tmp_path):
    import os

    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    with pytest.raises(DicomSkip) as exc:
        read_header(fifo)  # opening a FIFO for reading blocks until a writer comes: the loop would hang
    assert exc.value.reason == "not_regular_file"


# --- 5. control characters ------------------------------------------------------------------------------
def _strings(record: InstanceRecord) -> list[str]:
    out: list[str] = []
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name == "path":
            continue
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            out.extend(value)
    return out


def _is_control(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") or ch in "\u202a\u202b\u202c\u202d\u202e" \
        "\u2066\u2067\u2068\u2069\u200e\u200f"


def test_header_text_is_sanitised(tmp_path, ct_files):
    path = tmp_path / "ctl.dcm"
    path.write_bytes(control_characters(ct_files[0].read_bytes()))
    record = read_header(path)
    for text in _strings(record):
        assert not any(_is_control(ch) for ch in text), repr(text)
        assert len(text) <= 200
    assert record.protocol_name.startswith("Head") and "FAKE ALERT" in record.protocol_name
    assert record.body_part.startswith("HEAD")
    assert record.convolution_kernel[0].startswith("B30f")
    assert "AXIAL" in record.image_type[2]
    assert len(record.series_description) == 200
    assert CONTROL_TEXT not in record.manufacturer
