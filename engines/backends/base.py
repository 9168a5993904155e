"""A backend is a small class: load, infer, close, usable as a context manager.

The base class checks every feed against the model's input specs (names, dtypes, ranks, fixed dims,
and the batch range an engine was built for) so a preprocessing/model mismatch is reported as such,
not as an obscure CUDA or ONNX Runtime error. Modelled on Polygraphy's ``BaseRunner``
(polygraphy/backend/base/runner.py).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType

import numpy as np

from mediqa.engines.model_io import TensorSpec
from mediqa.errors import ModelError

logger = logging.getLogger(__name__)

class Backend(ABC):
    """Subclasses implement ``_load`` (setting ``input_specs``/``output_names``), ``_infer``, ``_close``."""

    name: str = "backend"

    def __init__(self) -> None:
        self.input_specs: dict[str, TensorSpec] = {}
        self.output_names: tuple[str, ...] = ()
        self.batch_range: tuple[int, int] | None = None  # engines with an optimization profile
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def describe(self) -> str:
        return self.name

    def load(self) -> Backend:
        if not self._loaded:
            self._load()
            self._loaded = True
            logger.debug("loaded %s", self.describe())
        return self

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._loaded:
            raise RuntimeError(f"{self.name}: infer() before load()")
        self.check_feed(feed)
        return self._infer(feed)

    def set_contended(self, contended: bool) -> None:  # noqa: B027 - optional hook: most backends ignore it
        """The machine's cores are busy with the agent's own work: a backend may use fewer threads."""

    def prepare_spare(self) -> None:  # noqa: B027 - optional hook, as above
        """Start making what ``set_contended`` would use, beside the caller (the cores are about to be busy)."""

    def release_spare(self) -> None:  # noqa: B027 - optional hook, as above
        """Drop what ``set_contended`` made (the agent is idle)."""

    def close(self) -> None:
        if self._loaded:
            self._loaded = False
            self._close()

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        expected = set(self.input_specs)
        missing, extra = expected - set(feed), set(feed) - expected
        if missing or extra:
            raise ModelError(f"{self.name}: model inputs are {sorted(expected)}, got {sorted(feed)}",
                             "the model and the preprocessing disagree: check the model card")
        batch: set[int] = set()
        for name, spec in self.input_specs.items():
            arr = feed[name]
            if not isinstance(arr, np.ndarray):
                raise ModelError(f"{self.name}: input '{name}' must be a numpy array, got {type(arr).__name__}")
            if arr.dtype != spec.dtype:
                raise ModelError(f"{self.name}: input '{name}' must be {spec.dtype.name}, got {arr.dtype.name}")
            if arr.ndim != len(spec.shape):
                raise ModelError(f"{self.name}: input '{name}' must have shape {spec.describe()}, got "
                                 f"{list(arr.shape)}")
            for axis, (want, got) in enumerate(zip(spec.shape, arr.shape, strict=True)):
                if isinstance(want, int) and want >= 0 and want != got:
                    raise ModelError(f"{self.name}: input '{name}' axis {axis} must be {want}, got {got} "
                                     f"(expected {spec.describe()})")
            if arr.ndim:
                batch.add(int(arr.shape[0]))
        if len(batch) > 1:
            raise ModelError(f"{self.name}: inputs disagree on the batch size: {sorted(batch)}")
        if self.batch_range and batch:
            n = batch.pop()
            low, high = self.batch_range
            if not low <= n <= high:
                raise ModelError(f"{self.name}: batch {n} outside the engine's profile {low}..{high}",
                                 "rebuild with `mediqa engine build --force` after changing slices or crops")

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _close(self) -> None: ...
