"""Volumes from real series: slice order, HU values, multi-frame, compressed, tilt, duplicates."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.volume import plan_series


def _only(root):
    (recs,) = scan_tree(root).values()
    return recs


def test_ge_head_ct_tilt_uneven_spacing_and_hu(shared_dicom):
    layout = plan_series(_only(shared_dicom / "dcm_qa_ct/In/GE"))
    assert layout.n_slices == 28 and layout.ordered_by == "position"
    positions = [s.position for s in layout.slices]
    assert positions == sorted(positions)
    assert abs(layout.gantry_tilt_deg - 18.5) < 0.5
    assert layout.uneven_spacing
    mid = layout.read_slices([14])[0]
    # HU: air about -1000, brain 20..50: rescale slope/intercept were applied.
    assert mid.min() <= -900
    centre = mid[200:300, 200:300]
    assert 0 < float(np.median(centre)) < 80


def test_order_independent_of_arrival_order(shared_dicom):
    recs = _only(shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010")
    shuffled = recs[:]
    random.Random(3).shuffle(shuffled)
    a, b = plan_series(recs), plan_series(shuffled)
    assert [s.path for s in a.slices] == [s.path for s in b.slices]
    assert a.slice_spacing == 5.0 and not a.uneven_spacing


@pytest.mark.slow
def test_enhanced_multiframe_gives_one_slice_per_frame(shared_dicom):
    series = scan_tree(shared_dicom / "dcm_qa_xa30/In/5_anat-T1w_acq-tfl")
    layout = plan_series(next(iter(series.values())))
    assert layout.n_slices == 96
    assert abs(layout.slice_spacing - 2.0) < 1e-3
    frames = layout.read_slices([0, 48, 95])
    assert frames.shape == (3, 128, 128)
    assert frames[1].mean() > frames[0].mean()  # mid-head has more signal than the edge


@pytest.mark.slow
def test_compressed_series_decodes(shared_dicom):
    """dcm_qa_frag: JPEG-lossless, multi-fragment frames of a box phantom."""
    layout = plan_series(_only(shared_dicom / "dcm_qa_frag"))
    assert layout.n_slices == 96
    mid = layout.read_slices([48])[0]
    assert mid.shape == (128, 128) and mid.max() > 100 and mid.std() > 10


@pytest.mark.slow
def test_time_series_keeps_first_time_point(shared_dicom):
    layout = plan_series(_only(shared_dicom / "dcm_qa_nih/In/20180918GE/mr_0004"))
    assert layout.n_slices == 15 and layout.time_points == 10 and layout.dropped_duplicates == 135
    assert any("share a position" in w for w in layout.warnings)


def test_mosaic_is_cut_into_tiles(shared_dicom):
    layout = plan_series(_only(shared_dicom / "dcm_qa/In/Orientation/ax/axasc36"))
    assert layout.n_slices == 36
    assert layout.read_slices([18]).shape == (1, 64, 64)


def test_missing_positions_fall_back_to_instance_number(shared_dicom):
    from dataclasses import replace

    from mediqa.agent.dicom.records import FrameGeometry

    recs = _only(shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010")
    stripped = [replace(r, frames=(FrameGeometry(None, None, r.frames[0].rescale_slope,
                                                  r.frames[0].rescale_intercept),)) for r in recs]
    layout = plan_series(stripped)
    assert layout.ordered_by == "instance_number"
    numbers = [s.instance_number for s in layout.slices]
    assert numbers == sorted(numbers)
    assert any("InstanceNumber" in w for w in layout.warnings)
