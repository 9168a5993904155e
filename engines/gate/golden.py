"""The golden set: fixed model inputs (clean and degraded series) the accuracy gate runs on.

Stored as a versioned ``.npz``: per case, one array per model input (batch = crops of that series),
plus case names, groups and provenance (where the series came from, how they were degraded, which
model card prepared them). Inputs are stored already preprocessed, so the gate compares backends on
exactly the same tensors everywhere (GPU console, build machine, CI) without re-reading DICOM.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediqa.engines.files import atomic_write_bytes
from mediqa.errors import ModelError

logger = logging.getLogger(__name__)

GOLDEN_FORMAT = "mediqa-golden"
GOLDEN_VERSION = 1


@dataclass(frozen=True)
class GoldenCase:
    name: str
    inputs: Mapping[str, np.ndarray]
    group: str = "clean"  # "clean" or "degraded" (free text: "degraded/noise x4" ...)


@dataclass(frozen=True)
class GoldenSet:
    cases: tuple[GoldenCase, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.cases[0].inputs) if self.cases else ()

    def sha256(self) -> str:
        """Content hash (names, groups, input bytes): recorded with every gate result."""
        digest = hashlib.sha256()
        for case in self.cases:
            digest.update(f"{case.name}\0{case.group}\0".encode())
            for name in sorted(case.inputs):
                arr = np.ascontiguousarray(case.inputs[name])
                digest.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
                digest.update(arr.tobytes())
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        groups: dict[str, int] = {}
        for case in self.cases:
            groups[case.group] = groups.get(case.group, 0) + 1
        return {"cases": len(self.cases), "groups": groups, "sha256": self.sha256(),
                "source": self.provenance.get("source", "unknown")}

    def check_against(self, input_names: Sequence[str]) -> None:
        """The golden set must feed exactly the model's inputs, or the gate would test nothing."""
        if set(self.input_names) != set(input_names):
            raise ModelError(f"golden set inputs {sorted(self.input_names)} do not match the model's "
                             f"{sorted(input_names)}", "rebuild the golden set for this model")

    def save(self, path: str | Path) -> Path:
        arrays: dict[str, np.ndarray] = {}
        for i, case in enumerate(self.cases):
            for name, arr in case.inputs.items():
                arrays[f"case{i:04d}/{name}"] = np.ascontiguousarray(arr)
        meta = {"format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, "provenance": dict(self.provenance),
                "cases": [{"name": c.name, "group": c.group, "inputs": list(c.inputs)} for c in self.cases]}
        arrays["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's hints: **kwds might fill allow_pickle
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> GoldenSet:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["__meta__"]).decode("utf-8"))
                if meta.get("format") != GOLDEN_FORMAT or meta.get("version") != GOLDEN_VERSION:
                    raise ModelError(f"{path} is not a {GOLDEN_FORMAT} v{GOLDEN_VERSION} file "
                                     f"(format {meta.get('format')!r} v{meta.get('version')!r})")
                cases = tuple(
                    GoldenCase(c["name"], {n: data[f"case{i:04d}/{n}"] for n in c["inputs"]}, c["group"])
                    for i, c in enumerate(meta["cases"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"golden set {path} is unreadable: {exc}", "rebuild it") from None
        return cls(cases, meta.get("provenance", {}))


def golden_from_inputs(cases: Sequence[tuple[str, Mapping[str, np.ndarray], str]],
                       provenance: Mapping[str, Any]) -> GoldenSet:
    """A golden set from already-prepared model inputs: ``(name, {input: array}, group)`` per case.

    Checks what would make the gate meaningless: no cases, duplicate names, inconsistent inputs or
    batch sizes, and a set without both clean and degraded cases (decisions would never differ).
    """
    if not cases:
        raise ModelError("a golden set needs at least one case")
    names = [c[0] for c in cases]
    if len(set(names)) != len(names):
        raise ModelError(f"golden case names must be unique: {names}")
    first_inputs = set(cases[0][1])
    built = []
    for name, inputs, group in cases:
        if set(inputs) != first_inputs:
            raise ModelError(f"golden case {name} has inputs {sorted(inputs)}, expected {sorted(first_inputs)}")
        batch = {np.shape(a)[0] if np.ndim(a) else None for a in inputs.values()}
        if len(batch) != 1 or None in batch:
            raise ModelError(f"golden case {name}: inputs disagree on the batch size ({batch})")
        built.append(GoldenCase(name, {k: np.ascontiguousarray(v) for k, v in inputs.items()}, group))
    groups = {c.group.split("/")[0] for c in built}
    if not {"clean", "degraded"} <= groups:
        logger.warning("golden set has groups %s: include clean and degraded series so the gate "
                       "sees both decisions", sorted(groups))
    return GoldenSet(tuple(built), dict(provenance))
