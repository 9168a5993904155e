"""Saliency of a long series is bounded and its selection deterministic (generated phantoms, no shared data).

A series of up to ``CANDIDATES_MAX`` slices is unchanged (every slice competes); a longer one competes with
``CANDIDATES_MAX`` evenly strided slices, so completion decodes at most that many whatever was computed as
files arrived, and the same files give the same selection whatever the store holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mediqa.agent.dicom import decode
from mediqa.agent.dicom.decode import slice_key
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.select.saliency import (
    CANDIDATES_MAX,
    candidate_indices,
    saliency_for_layout,
    saliency_from_store,
    select_slices,
)

LONG = CANDIDATES_MAX + 56


@pytest.fixture(scope="module")
def long_layout(tmp_path_factory: pytest.TempPathFactory) -> SeriesLayout:
    dest = tmp_path_factory.mktemp("long")
    write_phantom_ct(dest, noise_hu=5.0, seed=0, slices=LONG, size=64)
    return plan_series([read_header(str(p)) for p in sorted(Path(dest).iterdir())])


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = decode._pixels  # one call per file decoded (uncompressed files are read without pydicom)
    monkeypatch.setattr(decode, "_pixels", lambda record: calls.append(record.path) or real(record))
    return calls


def test_candidates_are_every_slice_of_a_short_series_and_a_bounded_stride_of_a_long_one() -> None:
    assert candidate_indices(0).tolist() == []
    assert candidate_indices(CANDIDATES_MAX).tolist() == list(range(CANDIDATES_MAX))
    for n in (CANDIDATES_MAX + 1, 300, 2000):
        c = candidate_indices(n)
        assert len(c) == CANDIDATES_MAX and c[0] == 0 and c[-1] == n - 1 and np.all(np.diff(c) > 0)
        assert np.array_equal(c, candidate_indices(n))  # a function of n alone


@pytest.mark.slow
def test_completion_decodes_at_most_the_candidates(long_layout: SeriesLayout, monkeypatch) -> None:
    calls = _counting(monkeypatch)
    values = saliency_from_store(long_layout, {})
    assert len(calls) == CANDIDATES_MAX
    assert np.isfinite(values[candidate_indices(LONG)]).all()
    calls.clear()
    half = {slice_key(long_layout.slices[i]): float(values[i]) for i in candidate_indices(LONG)[::2]}
    saliency_from_store(long_layout, half)
    assert len(calls) == CANDIDATES_MAX - len(half)  # only the candidates the store lacks


def test_the_selection_depends_on_the_files_not_on_what_was_stored(long_layout: SeriesLayout) -> None:
    reference = select_slices(long_layout, saliency=saliency_from_store(long_layout, {}))
    assert select_slices(long_layout).indices == reference.indices  # no store at all: the same
    candidates = set(candidate_indices(LONG).tolist())
    others = [i for i in range(LONG) if i not in candidates]
    every = saliency_for_layout(long_layout)  # as if every slice had been computed on arrival
    store = {slice_key(ref): float(every[i]) for i, ref in enumerate(long_layout.slices)}
    store[slice_key(long_layout.slices[others[len(others) // 2]])] = 1e6  # a slice that is no candidate
    chosen = select_slices(long_layout, saliency=saliency_from_store(long_layout, store))
    assert chosen.indices == reference.indices and np.allclose(chosen.weights, reference.weights)
    assert set(chosen.indices) <= candidates and len(chosen.saliency) == LONG


def test_a_short_series_is_unchanged(tmp_path: Path, monkeypatch) -> None:
    write_phantom_ct(tmp_path, noise_hu=5.0, seed=1, slices=20, size=64)
    layout = plan_series([read_header(str(p)) for p in sorted(tmp_path.iterdir())])
    every = saliency_for_layout(layout)
    sel = select_slices(layout)
    assert np.allclose(np.array(sel.saliency), np.clip(every, 0, None))
    calls = _counting(monkeypatch)
    store = {slice_key(ref): float(every[i]) for i, ref in enumerate(layout.slices) if i != 3}
    assert np.allclose(saliency_from_store(layout, store), every) and len(calls) == 1
