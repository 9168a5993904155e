"""What every degradation returns: the degraded image and the exact parameters that made it.

Labels for the upstream regression heads are read from ``params``; keeping image and parameters in one
frozen object means a sample cannot lose track of how it was made.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

log = logging.getLogger(__name__)

ParamValue = float | int | str | bool | list | dict | None


@dataclass(frozen=True)
class Degraded:
    """A degraded slice (float32, same shape as the input) and every parameter used to make it."""

    kind: str
    image: np.ndarray
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 2:
            raise ValueError(f"{self.kind}: expected a 2D slice, got shape {self.image.shape}")
        object.__setattr__(self, "image", np.ascontiguousarray(self.image, dtype=np.float32))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def plain_params(self) -> dict[str, ParamValue]:
        """Parameters as JSON-ready Python scalars (numpy scalars would not serialise)."""
        return {k: _plain(v) for k, v in self.params.items()}


@dataclass(frozen=True)
class DegradedVolume:
    """A degraded 3D volume ``[Z, H, W]``; every slice becomes one sample sharing the parameters."""

    kind: str
    volume: np.ndarray
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.volume.ndim != 3:
            raise ValueError(f"{self.kind}: expected a [Z, H, W] volume, got shape {self.volume.shape}")
        object.__setattr__(self, "volume", np.ascontiguousarray(self.volume, dtype=np.float32))

    def slice(self, index: int) -> Degraded:
        return Degraded(self.kind, self.volume[index], {**self.params, "volume_slice": index})


def _plain(value: ParamValue) -> ParamValue:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def child_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator that depends only on the seed and the sample's identity, not on scheduling order.

    Workers in a process pool finish in any order; seeding from (seed, source, slice, degradation, level)
    keeps ``mediqa data build`` byte-identical however the work is split.
    """
    words = [seed] + [k if isinstance(k, int) else _str_key(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _str_key(text: str) -> int:
    # Python's hash() is salted per process; use a stable digest instead.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
