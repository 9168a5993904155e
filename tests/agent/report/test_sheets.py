"""Contact sheets in the state dir: one per result, named by its id, drawn off the loop, pruned."""

from __future__ import annotations

import os
import stat
import time

import pytest
from PIL import Image

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.pipeline import analyse_series, unscored_result
from mediqa.agent.report.sheets import (
    SheetWriter,
    prune_sheets,
    sheet_path,
    sheets_dir,
    worst_tile_box,
    write_sheet,
)
from mediqa.agent.report.thumbnails import CAPTION_H, TILE
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    root = tmp_path_factory.mktemp("noisy")
    write_phantom_ct(root, noise_hu=60.0, seed=1, slices=8, size=96)
    (records,) = scan_tree(root).values()
    config = config_from_dict({"state_dir": str(root / "state"), "scoring": {"scorer": "classical"}})
    return records, analyse_series(records, ClassicalScorer(), config)


def test_a_sheet_per_result_named_by_its_id(tmp_path, noisy):
    _, analysis = noisy
    path = write_sheet(tmp_path, 17, analysis.layout, analysis.result)
    assert path == sheet_path(tmp_path, 17) == tmp_path / "sheets" / "17.png"
    assert stat.S_IMODE(os.stat(sheets_dir(tmp_path)).st_mode) == 0o700
    with Image.open(path) as img:
        box = worst_tile_box(analysis.result.to_json(), img.size)
        assert box is not None and (box[2] - box[0], box[3] - box[1]) == (TILE, TILE + CAPTION_H)
        red = img.convert("RGB").getpixel((box[0] + 1, box[1] + 1))
        assert red[0] > 150 and red[1] < 100  # the red frame of the worst slice is where the box says
    assert write_sheet(tmp_path, 18, analysis.layout, unscored_result([], ["no image"])) is None
    with pytest.raises(ValueError):
        sheet_path(tmp_path, -1)


def test_worst_tile_box_follows_the_sheets_layout():
    scores = {"slice_scores": [3.0, 2.0, None, 3.5, 1.0, 2.5]}  # the fifth (second row, first column) is worst
    box = worst_tile_box(scores, (2000, 2000))
    assert box is not None and box[0] == 6 and box[1] > TILE
    assert worst_tile_box({"slice_scores": [None]}, (900, 900)) is None
    assert worst_tile_box(scores, (100, 100)) is None  # not a sheet of this layout


def test_prune_by_age_then_by_size_touching_only_sheets(tmp_path):
    folder = tmp_path / "sheets"
    folder.mkdir()
    now = time.time()
    for i, (age_h, size) in enumerate([(100, 10), (50, 400_000), (10, 400_000), (1, 400_000)]):
        p = folder / f"{i}.png"
        p.write_bytes(b"x" * size)
        os.utime(p, (now - age_h * 3600, now - age_h * 3600))
    (folder / "notes.txt").write_text("not ours")
    stale = folder / "9.png.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (now - 7200, now - 7200))
    assert prune_sheets(folder, max_age_h=72, max_mb=0.8, now=now) == 3  # one by age, one by size, the stale .tmp
    assert sorted(p.name for p in folder.iterdir()) == ["2.png", "3.png", "notes.txt"]
    assert prune_sheets(folder, max_age_h=0, max_mb=0, now=now) == 0  # both limits off
    assert prune_sheets(tmp_path / "none", 1, 1) == 0


@pytest.mark.slow
def test_the_writer_draws_off_the_calling_thread_and_stops(tmp_path, noisy):
    records, analysis = noisy
    writer = SheetWriter(tmp_path, max_pending=2)
    try:
        started = time.perf_counter()
        assert writer.submit(5, lambda: records, analysis.result)  # read and planned in the writer's thread
        assert writer.submit(6, analysis.layout, analysis.result)
        assert time.perf_counter() - started < 0.1  # the agent's loop never waits for a picture
        assert not writer.submit(7, records, unscored_result([], ["x"]))
    finally:
        writer.close(timeout=30)
    assert sheet_path(tmp_path, 5).is_file() and sheet_path(tmp_path, 6).is_file() and writer.written == 2


def test_the_writer_says_while_it_has_sheets_to_draw(tmp_path, noisy):
    """The agent's memory release waits for the sheets drawn after the results (``SheetWriter.pending``)."""
    import threading

    records, analysis = noisy
    go = threading.Event()
    writer = SheetWriter(tmp_path)
    try:
        assert not writer.pending()
        writer.submit(3, lambda: go.wait(10) and records, analysis.result)
        assert writer.pending()
        go.set()
        deadline = time.monotonic() + 30
        while writer.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not writer.pending() and sheet_path(tmp_path, 3).is_file()
        writer.submit(4, [], analysis.result)  # a sheet that fails is done too
        while writer.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not writer.pending()
    finally:
        writer.close(timeout=10)


def test_a_failing_sheet_is_a_log_line_not_an_error(tmp_path, noisy, caplog):
    _, analysis = noisy
    writer = SheetWriter(tmp_path)
    try:
        writer.submit(8, [], analysis.result)  # nothing to plan a series from
    finally:
        writer.close(timeout=10)
    assert not sheet_path(tmp_path, 8).exists() and "result 8 not written" in caplog.text
