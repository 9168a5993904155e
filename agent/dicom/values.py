"""Header values as plain Python: what the header reader, the pixel-extent check and the mosaic geometry need.

pydicom gives a value as a scalar, a ``MultiValue``, a list or "" (empty); these helpers read any of
them without raising, so a malformed value is simply absent. The exceptions are the physical values a
score depends on (``rescale``, ``physical_floats``): present but not a number is a ``malformed_header``.
"""

from __future__ import annotations

import math
from typing import Any

from pydicom.dataset import Dataset

from mediqa.agent.dicom.records import TUPLE_LIMIT, clean_text
from mediqa.errors import DicomSkip


def value_list(value: Any) -> list[Any]:
    """The value's items: [] when absent or empty, [value] for a scalar."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def first_float(value: Any) -> float | None:
    """The first value as a finite float; None when absent, not a number, infinite or NaN."""
    try:
        items = value_list(value)
        f = float(items[0]) if items else None
    except (TypeError, ValueError, OverflowError):
        return None
    return f if f is not None and math.isfinite(f) else None


def series_uid_of(ds: Dataset) -> str | None:
    """The header's SeriesInstanceUID when it can be read at all (cleaned like the record's), else None."""
    try:
        value = ds.get("SeriesInstanceUID")
        return clean_text(value) or None if value is not None else None
    except Exception:  # noqa: BLE001 - a broken UID is one more thing this header got wrong
        return None


def meta(ds: Dataset, name: str) -> str:
    """A file meta value (TransferSyntaxUID, MediaStorageSOPClassUID) as text, "" when absent."""
    file_meta = getattr(ds, "file_meta", None)
    return str(file_meta.get(name, "")) if file_meta is not None else ""


def texts(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value_list(value)[:TUPLE_LIMIT])


def floats(value: Any) -> list[float] | None:
    try:
        items = [float(v) for v in value_list(value)]
    except (TypeError, ValueError, OverflowError):
        return None
    return items if items and all(math.isfinite(v) for v in items) else None


def rescale(value: Any, name: str, fallback: Any, default: float) -> float:
    """RescaleSlope/Intercept: absent -> ``fallback`` (the shared group's), then ``default``.

    Present but not a finite number is a malformed header, not "1.0": guessing the slope of a CT would
    score wrong Hounsfield units as if they were right. (Finite but absurd values are kept: ``plan_series``
    refuses them with the value in its message.)
    """
    for candidate in (value, fallback):
        if candidate is None or candidate == "":
            continue
        f = first_float(candidate)
        if f is None:
            raise DicomSkip("malformed_header", f"{name} {clean_text(candidate, 40)!r} is not a number")
        return f
    return default


def physical_floats(value: Any, name: str) -> list[float] | None:
    """Like ``_floats``, but a value that is present and not all finite numbers is a malformed header."""
    if value is None or value == "":
        return None
    items = floats(value)
    if items is None:
        raise DicomSkip("malformed_header", f"{name} {clean_text(value, 40)!r} is not a number")
    return items


INT_RANGE = 2**31  # IS is a 32-bit signed integer; beyond that a value is noise, not a count or an index


def to_int(value: Any) -> int | None:
    f = first_float(value)
    return int(f) if f is not None and -INT_RANGE <= f < INT_RANGE else None


def vec3(value: Any) -> tuple[float, float, float] | None:
    items = floats(value)
    return (items[0], items[1], items[2]) if items and len(items) == 3 else None


def vec6(value: Any) -> tuple[float, float, float, float, float, float] | None:
    items = floats(value)
    return (items[0], items[1], items[2], items[3], items[4], items[5]) if items and len(items) == 6 else None


def first_item(seq: Any) -> Dataset | None:
    return seq[0] if seq else None


def item_attr(item: Dataset | None, seq_name: str, attr: str) -> Any:
    if item is None:
        return None
    inner = first_item(item.get(seq_name))
    return inner.get(attr) if inner is not None else None


def shared_spacing(ds: Dataset) -> list[float] | None:
    shared = first_item(ds.get("SharedFunctionalGroupsSequence"))
    spacing = physical_floats(item_attr(shared, "PixelMeasuresSequence", "PixelSpacing"), "PixelSpacing")
    if spacing:
        return spacing
    per = first_item(ds.get("PerFrameFunctionalGroupsSequence"))
    return physical_floats(item_attr(per, "PixelMeasuresSequence", "PixelSpacing"), "PixelSpacing")
