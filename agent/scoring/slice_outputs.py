"""Model outputs kept per slice, under the digest of exactly what the model was fed for that slice.

The model scores every crop on its own (no batch statistics; a slice's crops are cut and normalised from
that slice alone, ``preprocess.prepare``), so the outputs for a slice's crops are a function of those
crops, its prompt row and the model. Kept under a digest of the first two (the store belongs to one
loaded model), they are reused whenever the same slice is scored again with the same prompt: a series
whose chosen slices were passed while its last files arrived (``loop/early.py``), a series scored ahead
of its quiet period and again after one more file, a result superseded by a late file. Only the slices
not seen before go to the model; outputs are assembled in the order the crops were cut, so a series'
result is the one a single pass gives (to the float rounding of a different batch size).

Bounded (``KEPT`` slices, a few hundred bytes each). One ``run`` at a time (a lock): the loop's early pass
runs in a thread of its own, and a series scored meanwhile waits for it and then finds its slices kept.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

KEPT = 512  # slices whose outputs are kept (~70 series of 7): the newest; each entry is a few hundred bytes

Infer = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


def input_digest(crops: np.ndarray, prompt: np.ndarray) -> bytes:
    """Digest of one slice's model input: its crops and their prompt rows (shapes and dtypes included)."""
    h = hashlib.blake2b(digest_size=16)
    for arr in (crops, prompt):
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).data)
    return h.digest()


class SliceOutputs:
    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._outputs: OrderedDict[bytes, dict[str, np.ndarray]] = OrderedDict()
        self.passed_crops = 0  # crops sent to the model through ``run`` (tools and tests read it) ...
        self.passed_slices = 0  # ... and the slices they were cut from
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._outputs)

    def clear(self) -> None:
        """Forget every slice, and the counts."""
        with self._lock:
            self._outputs.clear()
            self.passed_crops = self.passed_slices = 0

    def run(self, infer: Infer, crops: np.ndarray, prompt: np.ndarray, owner: np.ndarray,
            batch_ok: Callable[[int], bool] = lambda n: True) -> dict[str, np.ndarray]:
        """The model's outputs for every crop (rows in crop order), passing only the slices not kept.

        ``owner[i]`` is the slice crop ``i`` was cut from (crops slice-major, as ``prepare`` cuts them).
        ``batch_ok(n)``: whether the backend takes a batch of ``n`` (an engine's profile bounds it); when it
        does not take the slices left, all of them are passed, as without this store.
        """
        with self._lock:
            return self._run(infer, crops, prompt, owner, batch_ok)

    def _run(self, infer: Infer, crops: np.ndarray, prompt: np.ndarray, owner: np.ndarray,
             batch_ok: Callable[[int], bool]) -> dict[str, np.ndarray]:
        spans = _spans(owner)
        if spans is None:  # not slice-major: no per-slice reuse
            self.passed_slices += len(set(np.asarray(owner).tolist()))
            return self._pass(infer, crops, prompt)
        keys = [input_digest(crops[a:b], prompt[a:b]) for a, b in spans]
        known: list[dict[str, np.ndarray] | None] = [self._get(key) for key in keys]
        todo = [i for i, k in enumerate(known) if k is None]
        rows = sum(spans[i][1] - spans[i][0] for i in todo)
        if todo and not batch_ok(rows):
            todo, rows = list(range(len(spans))), len(crops)
        if todo:
            self.passed_slices += len(todo)
            take = np.concatenate([np.arange(*spans[i]) for i in todo])
            fresh = self._pass(infer, crops[take], prompt[take])
            if any(np.ndim(v) == 0 or np.shape(v)[0] != rows for v in fresh.values()):
                return self._pass(infer, crops, prompt) if rows != len(crops) else fresh  # not batch-major
            offset = 0
            for i in todo:
                n = spans[i][1] - spans[i][0]
                part = {name: np.array(value[offset:offset + n]) for name, value in fresh.items()}
                offset += n
                known[i] = part
                self._put(keys[i], part)
        parts = [k for k in known if k is not None]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}

    def _pass(self, infer: Infer, crops: np.ndarray, prompt: np.ndarray) -> dict[str, np.ndarray]:
        self.passed_crops += len(crops)
        return {name: np.asarray(value) for name, value in infer({"image": crops, "prompt": prompt}).items()}

    def _get(self, key: bytes) -> dict[str, np.ndarray] | None:
        found = self._outputs.get(key)
        if found is not None:
            self._outputs.move_to_end(key)
        return found

    def _put(self, key: bytes, outputs: dict[str, np.ndarray]) -> None:
        self._outputs[key] = outputs
        self._outputs.move_to_end(key)
        while len(self._outputs) > self.kept:
            self._outputs.popitem(last=False)


def _spans(owner: np.ndarray) -> list[tuple[int, int]] | None:
    """(start, stop) of each slice's crops, in crop order, when each slice's crops are consecutive; else None."""
    owner = np.asarray(owner)
    if owner.ndim != 1 or not len(owner):
        return None
    breaks = np.flatnonzero(np.diff(owner)) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(owner)]])
    if len(set(owner[starts].tolist())) != len(starts):  # a slice's crops in two places
        return None
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
