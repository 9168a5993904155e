"""tqdm progress bars without tqdm's monitor thread.

tqdm starts a background ``tqdm_monitor`` thread on first use that outlives the bar; in a process
that also runs the agent (and in the test suite, which fails on leaked threads) it must not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``; without an iterable, a bar that the caller ``update()``s (give ``total``)."""
    tqdm.monitor_interval = 0
    return tqdm(iterable, **kwargs)
