"""The slices a counted series still arriving will choose (select/predict.py), against the choice of the
complete series: in order, in reverse order, with holes; and no prediction where none holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mediqa.agent.dicom.decode import slice_key
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import InstanceRecord
from mediqa.agent.dicom.volume import plan_series
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.select.predict import likely_chosen
from mediqa.agent.select.saliency import fixed_indices, select_slices

N, K = 300, 7


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[InstanceRecord]:
    dest = tmp_path_factory.mktemp("stack")
    write_phantom_ct(dest, noise_hu=5.0, seed=0, slices=N, size=32)
    return [read_header(str(p)) for p in sorted(Path(dest).iterdir())]  # InstanceNumber 1..N along z


def _store(records: list[InstanceRecord], body_ends: float = 1.0) -> dict:
    """A body that fills the middle of the stack and fades out at both ends (below the edge fraction), or
    that ends abruptly at ``body_ends`` of the stack (the last slices empty)."""
    z = np.arange(N)
    values = np.exp(-(((z - 0.45 * N) / (0.3 * N)) ** 2)) + 0.01 * np.sin(z)
    if body_ends < 1.0:
        values = np.where(z < body_ends * N, 0.5 + 0.4 * np.sin(z / 7.0) ** 2, 0.0)
    layout = plan_series(records)
    return {slice_key(ref): float(values[i]) for i, ref in enumerate(layout.slices)}


def _final_paths(records: list[InstanceRecord], store: dict) -> set[str]:
    layout = plan_series(records)
    saliency = np.array([store[slice_key(ref)] for ref in layout.slices])
    return {layout.slices[i].path for i in select_slices(layout, K, saliency=saliency).indices}


def _predicted_paths(arrived: list[InstanceRecord], store: dict, method: str = "salient") -> set[str] | None:
    layout = plan_series(arrived)
    chosen = likely_chosen(layout, N, K, method, store)
    return None if chosen is None else {layout.slices[i].path for i in chosen}


@pytest.mark.parametrize(("fraction", "body_ends"), [(0.95, 1.0), (0.99, 1.0), (0.97, 0.98)])
def test_late_in_an_ordered_export_every_chosen_slice_that_arrived_is_predicted(records, fraction, body_ends):
    store = _store(records, body_ends)
    final = _final_paths(records, store)
    arrived = records[: int(fraction * N)]
    predicted = _predicted_paths(arrived, store)
    assert predicted is not None and len(predicted) <= 2 * K
    assert final & {r.path for r in arrived} <= predicted


def test_an_export_numbered_against_the_positions_and_one_with_holes_are_predicted_too(records):
    store = _store(records)
    reverse = [dataclasses.replace(r, instance_number=N + 1 - (r.instance_number or 0)) for r in records]
    final = _final_paths(reverse, store)
    arrived = [r for r in reverse if (r.instance_number or 0) <= int(0.97 * N)]  # the high positions come last
    predicted = _predicted_paths(arrived, store)
    assert predicted is not None and final & {r.path for r in arrived} <= predicted
    rng = np.random.default_rng(3)
    holes = [r for r in records if rng.random() < 0.97]  # files indexed out of order: some still missing
    final = _final_paths(records, store)
    predicted = _predicted_paths(holes, store)
    assert predicted is not None and final & {r.path for r in holes} <= predicted


def test_the_fixed_rule_is_predicted_from_the_count(records):
    arrived = records[:250]
    layout = plan_series(records)
    expected = {layout.slices[i].path for i in fixed_indices(N) if i < 250}
    assert _predicted_paths(arrived, _store(records), method="fixed") == expected


def test_no_prediction_where_the_numbers_do_not_give_the_places(records):
    store = _store(records)
    layout = plan_series(records[:200])
    assert likely_chosen(layout, 200, K, "salient", store) is None  # nothing missing: completion is now
    assert likely_chosen(layout, 150, K, "salient", store) is None  # more than announced
    beyond = [dataclasses.replace(r, instance_number=(r.instance_number or 0) + N) for r in records[:200]]
    assert likely_chosen(plan_series(beyond), N, K, "salient", store) is None  # numbers beyond the count
    unnumbered = [dataclasses.replace(r, instance_number=None) for r in records[:200]]
    assert likely_chosen(plan_series(unnumbered), N, K, "salient", store) is None
    shuffled = list(records[:200])
    numbers = np.random.default_rng(0).permutation(200) + 1
    shuffled = [dataclasses.replace(r, instance_number=int(n)) for r, n in zip(shuffled, numbers, strict=True)]
    assert likely_chosen(plan_series(shuffled), N, K, "salient", store) is None  # not along the positions
