"""Salient-slice selection on real series: order, body content, spread, arrival order, short series."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import ndimage

from mediqa.agent.dicom import decode
from mediqa.agent.dicom.volume import SeriesLayout, plan_series
from mediqa.agent.select import saliency
from mediqa.agent.select.saliency import (
    EDGE_FRACTION,
    fixed_indices,
    record_saliency,
    saliency_for_layout,
    saliency_from_store,
    select_slices,
    slice_saliency,
)

pytestmark = pytest.mark.shared_data

VOLUMES = ["dcm_qa_ct/In/GE", "dcm_qa_ct/In/Philips/S21570/S2020", "dcm_qa_philips_enh/In/cl",
           "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag", "dcm_qa_xa30/In/5_anat-T1w_acq-tfl",
           "dcm_qa_decubitus/In/HFS/4_ep2d_diff_mddw_20_p2"]


def _body_fraction(layout: SeriesLayout, slices: np.ndarray, volume_p99: float) -> np.ndarray:
    """Body fraction per slice, computed apart from the selector (4 mm blocks bridge gaps in thin bone)."""
    if layout.modality == "CT":
        k, (h, w) = 8, slices.shape[1:]
        blocks = slices[:, :h // k * k, :w // k * k].reshape(len(slices), h // k, k, w // k, k).max(axis=(2, 4))
        masks = [ndimage.binary_fill_holes(ndimage.binary_closing(b > -300, np.ones((3, 3)))) for b in blocks]
    else:
        masks = [s > 0.1 * volume_p99 for s in slices]
    return np.array([m.mean() for m in masks])


@pytest.mark.slow
@pytest.mark.parametrize("name", VOLUMES)
def test_selection_is_ordered_inside_the_body_and_spread(name: str, shared_layouts: dict[str, SeriesLayout]) -> None:
    layout = shared_layouts[name]
    sel = select_slices(layout, k=7)
    idx = np.array(sel.indices)
    assert len(idx) == 7 and sel.method == "salient"
    positions = np.array([layout.slices[i].position for i in idx])
    assert np.all(np.diff(idx) > 0) and np.all(np.diff(positions) > 0), "not in anatomical order"
    assert abs(sum(sel.weights) - 1.0) < 1e-9 and min(sel.weights) > 0
    assert len(sel.saliency) == layout.n_slices

    # Inside the body: each chosen slice holds >= 30% of the fullest slice's body (the vertex part of a head is small).
    every = np.linspace(0, layout.n_slices - 1, min(layout.n_slices, 40)).round().astype(int)
    reference = layout.read_slices(every)
    chosen = layout.read_slices(idx)
    p99 = float(np.percentile(reference, 99))
    fullest = _body_fraction(layout, reference, p99).max()
    assert _body_fraction(layout, chosen, p99).min() > 0.3 * fullest

    # Spread: one slice in each of 7 equal parts (mm) of the covered span.
    sal = np.array(sel.saliency)
    covered = np.flatnonzero(sal > EDGE_FRACTION * sal.max())
    all_pos = np.array([s.position for s in layout.slices])
    lo, hi = all_pos[covered[0]], all_pos[covered[-1]]
    parts = np.minimum(((positions - lo) / (hi - lo) * 7).astype(int), 6)
    assert sorted(parts.tolist()) == list(range(7)), f"parts {parts} for {name}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dcm_qa_ct/In/GE", "dcm_qa_philips_enh/In/cl", "dcm_qa_ts/In"])
def test_selection_is_stable_under_arrival_order(name: str, shared_series: dict, shared_layouts: dict) -> None:
    reference = select_slices(shared_layouts[name])
    ref_pos = [shared_layouts[name].slices[i].position for i in reference.indices]
    for seed in (1, 2):
        records = list(shared_series[name])
        random.Random(seed).shuffle(records)
        layout = plan_series(records)
        sel = select_slices(layout)
        assert sel.indices == reference.indices
        assert [layout.slices[i].position for i in sel.indices] == ref_pos
        assert np.allclose(sel.weights, reference.weights)


def test_precomputed_saliency_decodes_nothing(shared_series: dict, shared_layouts: dict, monkeypatch) -> None:
    name = "dcm_qa_ct/In/GE"
    layout = shared_layouts[name]
    store: dict = {}
    for record in shared_series[name]:  # as the tracker would, one instance at a time
        store.update(record_saliency(record))
    values = saliency_from_store(layout, store)
    assert np.allclose(values, saliency_for_layout(layout))

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded pixels although saliency was precomputed")

    monkeypatch.setattr(decode.pydicom, "dcmread", no_decoding)
    monkeypatch.setattr(decode, "_pixels", no_decoding)
    assert select_slices(layout, saliency=values).indices == select_slices(layout, saliency=values).indices
    assert np.allclose(saliency_from_store(layout, store), values)


def test_store_with_gaps_decodes_only_the_missing(shared_series: dict, shared_layouts: dict, monkeypatch) -> None:
    name = "dcm_qa_ct/In/Philips/S21570/S2010"
    layout = shared_layouts[name]
    store: dict = {}
    for record in shared_series[name][:-3]:
        store.update(record_saliency(record))
    expected = saliency_for_layout(layout)
    calls: list[str] = []
    real = decode._pixels  # one call per file decoded (uncompressed files are read without pydicom)
    monkeypatch.setattr(decode, "_pixels", lambda record: calls.append(record.path) or real(record))
    values = saliency_from_store(layout, store)
    assert len(calls) == 3
    assert np.allclose(values, expected)


def test_short_and_single_slice_series_have_no_duplicates(shared_series: dict, shared_layouts: dict) -> None:
    dwi = shared_layouts["dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2"]  # two slices
    for method in ("salient", "fixed"):
        sel = select_slices(dwi, k=7, method=method)
        assert sel.indices == (0, 1) and abs(sum(sel.weights) - 1) < 1e-9
    single = plan_series(shared_series["dcm_qa_ct/In/GE"][:1])  # one 2D image
    for method in ("salient", "fixed"):
        sel = select_slices(single, k=7, method=method)
        assert sel.indices == (0,) and sel.weights == (1.0,)
    short = select_slices(shared_layouts["dcm_qa_philips/In/Magdeburg_2014/fmri"], k=12)  # 9 slices < k
    assert len(set(short.indices)) == len(short.indices) <= 9


def test_fixed_rule_matches_the_released_formula(shared_layouts: dict) -> None:
    layout = shared_layouts["dcm_qa_ct/In/Philips/S21570/S2020"]
    n = layout.n_slices
    m, s = n // 2, n // 6
    sel = select_slices(layout, method="fixed")
    assert sel.indices == (0, m - 2 * s, m - s, m, m + s, m + 2 * s, n - 1)
    assert np.allclose(sel.weights, 1 / 7) and sel.method == "fixed"
    assert fixed_indices(5) == [0, 2, 4] and fixed_indices(1) == [0] and fixed_indices(0) == []


def test_slice_saliency_rejects_air_and_table() -> None:
    air = np.full((512, 512), -1000.0, np.float32)
    table = air.copy()
    table[400:404, 50:460] = 300.0  # a thin dense line, as a patient table looks in an axial slice
    body = air.copy()
    yy, xx = np.mgrid[:512, :512]
    body[(yy - 256) ** 2 + (xx - 256) ** 2 < 150 ** 2] = 40.0
    assert slice_saliency(air, "CT") == 0.0
    assert slice_saliency(table, "CT") == 0.0
    assert slice_saliency(body, "CT") > 0.2
    ring = air.copy()  # an empty skull: thin bone around air still counts as inside the body
    r2 = (yy - 256) ** 2 + (xx - 256) ** 2
    ring[(r2 < 150 ** 2) & (r2 > 144 ** 2)] = 1000.0
    assert slice_saliency(ring, "CT") > 0.5 * slice_saliency(body, "CT")


def test_empty_edges_are_skipped() -> None:
    sal = np.array([0.0, 0.01, 0.5, 0.9, 1.0, 0.8, 0.7, 0.9, 0.6, 0.5, 0.4, 0.02, 0.0])
    idx = saliency.salient_indices(sal, list(range(len(sal))), 3)
    assert len(idx) == 3 and min(idx) >= 2 and max(idx) <= 10


def test_rejects_bad_arguments(shared_layouts: dict) -> None:
    layout = shared_layouts["dcm_qa_ct/In/GE"]
    with pytest.raises(ValueError):
        select_slices(layout, method="random")
    with pytest.raises(ValueError):
        select_slices(layout, saliency=np.ones(3))
