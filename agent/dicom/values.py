"""Header values as plain Python: what both the header reader and the mosaic geometry need.

pydicom gives a value as a scalar, a ``MultiValue``, a list or "" (empty); these helpers read any of
them without raising, so a malformed value is simply absent.
"""

from __future__ import annotations

import math
from typing import Any


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
