"""The contact sheet: a valid PNG of plausible size, one tile per chosen slice, no patient identifiers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from mediqa.agent.report.thumbnails import CAPTION_H, TILE, contact_sheet
from mediqa.agent.select.saliency import select_slices


def _result(selection, scores, decision: str = "ok") -> SimpleNamespace:
    return SimpleNamespace(selection=selection, slice_scores=scores, score=2.5, decision=decision,
                           series_number=7, series_description="STD BRAIN", prompt={"modality": "CT"})


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["dcm_qa_ct/In/GE", "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag"])
def test_sheet_is_a_png_with_one_tile_per_slice(name: str, shared_layouts: dict, tmp_path: Path) -> None:
    layout = shared_layouts[name]
    sel = select_slices(layout)
    out = contact_sheet(layout, _result(sel, [3.0, 2.0, 1.0, 2.5, 3.5, 2.2, 2.8], "retake"), tmp_path / "a" / "s.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < out.stat().st_size < 3_000_000
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        w, h = img.size
        assert w >= 4 * TILE and h >= 2 * (TILE + CAPTION_H)  # 7 tiles: 4 columns, 2 rows
        assert img.convert("L").getextrema()[1] > 200  # something bright was drawn, not a blank sheet
    assert not list(out.parent.glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.shared_data
def test_sheet_without_scores_and_for_a_single_slice(shared_series: dict, tmp_path: Path) -> None:
    from mediqa.agent.dicom.volume import plan_series

    layout = plan_series(shared_series["dcm_qa_ct/In/GE"][:1])
    sel = select_slices(layout)
    out = contact_sheet(layout, _result(sel, ()), tmp_path / "one.png")
    with Image.open(out) as img:
        assert img.size[1] < 2 * (TILE + CAPTION_H)
    with pytest.raises(ValueError):
        contact_sheet(layout, _result(sel, (1.0, 2.0)), tmp_path / "bad.png")



def test_a_deleted_slice_is_a_blank_tile_not_a_lost_sheet(tmp_path: Path) -> None:
    """Generated series (no shared data needed): one chosen file is deleted after indexing."""
    from mediqa.agent.dicom.index import scan_tree
    from mediqa.agent.dicom.volume import plan_series
    from mediqa.agent.samples import write_phantom_ct

    write_phantom_ct(tmp_path / "s", noise_hu=4.0, seed=0, slices=8, size=96)
    (records,) = scan_tree(tmp_path / "s").values()
    layout = plan_series(records)
    sel = select_slices(layout, k=4)
    Path(layout.slices[sel.indices[0]].path).unlink()
    out = contact_sheet(layout, _result(sel, [3.0] * len(sel.indices)), tmp_path / "sheet.png")
    with Image.open(out) as img:
        img.verify()
