"""Poison series: they end unscored with a plain reason (a ``SeriesError``), never scored wrong, never a crash.

``plan_series`` refuses headers that cannot be measured physically; ``read_slices`` turns every
decoding failure (codecs nothing here decodes, corrupt payloads, a file deleted or replaced after it
was indexed, mixed image sizes) into a ``SeriesError``; ``read_partial`` reads what it can and says
which slices it could not, so a series can be scored on the rest.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from poison import HTJ2K_SYNTAXES, MPEG2_MAIN, compressed, good_ct, good_mr, with_changes
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from mediqa.agent.dicom.decode import decode_downsampled, decode_downsampled_partial, decode_record_downsampled
from mediqa.agent.dicom.index import read_header
from mediqa.agent.dicom.records import FrameGeometry, InstanceRecord
from mediqa.agent.dicom.volume import plan_series
from mediqa.errors import SeriesError


def _records(paths: list[Path]) -> list[InstanceRecord]:
    return [read_header(p) for p in paths]


def _no_path(message: str, paths) -> None:
    for p in paths:
        assert str(p) not in message and Path(p).name not in message, message


# --- 6. physically absurd values: plan_series refuses them ---------------------------------------------
def _with_frame(record: InstanceRecord, **geom) -> InstanceRecord:
    return replace(record, frames=tuple(replace(f, **geom) for f in record.frames))


@pytest.mark.parametrize(("change", "message"), [
    ({"rescale_slope": 1e38}, "RescaleSlope 1e+38 is not physical"),
    ({"rescale_slope": 0.0}, "RescaleSlope 0 is not physical"),
    ({"rescale_slope": 2e4}, "RescaleSlope 20000 is not physical"),
    ({"rescale_slope": 1e-9}, "RescaleSlope 1e-09 is not physical"),
    ({"rescale_slope": float("nan")}, "RescaleSlope nan is not physical"),
    ({"rescale_slope": float("inf")}, "RescaleSlope inf is not physical"),
    ({"rescale_intercept": 1e7}, "RescaleIntercept 1e+07 is not physical"),
    ({"rescale_intercept": float("-inf")}, "RescaleIntercept -inf is not physical"),
    ({"position": (0.0, 0.0, 1e300)}, "ImagePositionPatient"),
    ({"position": (0.0, float("nan"), 1.0)}, "ImagePositionPatient"),
    ({"orientation": (5.0, 0.0, 0.0, 0.0, 1.0, 0.0)}, "ImageOrientationPatient"),
])
def test_plan_refuses_geometry_and_rescale_that_are_not_physical(tmp_path, change, message):
    records = _records(good_ct(tmp_path / "ct"))
    records[1] = _with_frame(records[1], **change)
    with pytest.raises(SeriesError, match="not physical") as exc:
        plan_series(records)
    assert message in str(exc.value)


@pytest.mark.parametrize("spacing", [(0.0, 0.0), (1e30, 1e30), (-0.7, 0.7), (60.0, 60.0), (float("nan"), 0.7),
                                     (1e-6, 1e-6)])
def test_plan_refuses_pixel_spacing_that_is_not_physical(tmp_path, spacing):
    records = _records(good_ct(tmp_path / "ct"))
    records[0] = replace(records[0], pixel_spacing=spacing)
    with pytest.raises(SeriesError, match=r"PixelSpacing .* is not physical"):
        plan_series(records)


def test_rescale_slope_from_the_file_is_refused_by_the_planner(tmp_path):
    paths = good_ct(tmp_path / "ct")
    with_changes(paths[2], paths[2], RescaleSlope="1e38")
    with pytest.raises(SeriesError, match=r"RescaleSlope 1e\+38 is not physical"):
        plan_series(_records(paths))
    with_changes(paths[2], paths[2], RescaleSlope=1, PixelSpacing=[0, 0])
    with pytest.raises(SeriesError, match="PixelSpacing 0"):
        plan_series(_records(paths))


def test_absurd_slice_thickness_is_a_warning_not_a_refusal(tmp_path):
    records = [replace(r, slice_thickness=-5.0) for r in _records(good_ct(tmp_path / "ct"))]
    layout = plan_series(records)
    assert any("SliceThickness" in w for w in layout.warnings)
    assert layout.read_slices([0]).shape == (1, 96, 96)


def test_read_slices_never_overflows_even_on_a_hand_made_layout(tmp_path):
    """A layout not made by plan_series (or from an older database) still cannot score overflowed pixels."""
    layout = plan_series(_records(good_ct(tmp_path / "ct")))
    bad = replace(layout, slices=tuple(replace(s, slope=1e38) for s in layout.slices))
    with pytest.raises(SeriesError, match="could not be read: RescaleSlope 1e\\+38 is not physical"):
        bad.read_slices([0, 1])  # warnings are errors in this suite: an overflow warning would fail here
    with pytest.raises(SeriesError):
        decode_downsampled(bad, [0], 16)


def test_good_series_still_read(tmp_path):
    for paths in (good_ct(tmp_path / "ct"), good_mr(tmp_path / "mr")):
        layout = plan_series(_records(paths))
        pixels = layout.read_slices(range(layout.n_slices))
        assert pixels.dtype == np.float32 and np.isfinite(pixels).all()
        assert len(decode_downsampled(layout, range(layout.n_slices), 16)) == layout.n_slices


# --- 7. undecodable slices: a SeriesError with a reason, and a partial read ----------------------------
UNDECODABLE = {
    **{f"htj2k_{uid[-3:]}_garbage": (uid, None) for uid in HTJ2K_SYNTAXES},
    "mpeg2": (MPEG2_MAIN, None),
    "j2k_truncated": (JPEG2000Lossless, "truncate"),
    "j2k_zeros": (JPEG2000Lossless, "zeros"),
    "jpegls_garbage": (JPEGLSLossless, "garbage"),
    "rle_garbage": (RLELossless, "garbage"),
    "rle_zeros": (RLELossless, "zeros"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_undecodable_slice_is_a_series_error_and_the_rest_can_be_read(tmp_path, name):
    syntax, corrupt = UNDECODABLE[name]
    paths = good_ct(tmp_path / "ct")
    compressed(paths[1], paths[1], syntax, corrupt=corrupt)
    records = _records(paths)  # the header is fine: the file is indexed, its series planned
    assert records[1].transfer_syntax == syntax
    layout = plan_series(records)
    bad = next(i for i, s in enumerate(layout.slices) if s.path == str(paths[1]))
    with pytest.raises(SeriesError, match="^1 of 4 chosen slices could not be read: ") as exc:
        layout.read_slices(range(4))
    _no_path(str(exc.value), paths)
    part = layout.read_partial(range(4))
    assert part.pixels.shape == (3, 96, 96) and part.indices == tuple(i for i in range(4) if i != bad)
    assert [i for i, _ in part.failed] == [bad] and part.summary().startswith("3 of 4 images could be read")
    assert layout.read_slices([i for i in range(4) if i != bad]).shape == (3, 96, 96)
    with pytest.raises(SeriesError, match="could not be decoded"):
        decode_downsampled(layout, range(4), 16)
    with pytest.raises(SeriesError):
        decode_record_downsampled(records[1], 16)
    images, failed = decode_downsampled_partial(layout, range(4), 16)
    assert [i for i, _ in failed] == [bad] and images[bad] is None and images[(bad + 1) % 4] is not None


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_good_compressed_slices_decode(tmp_path, syntax):
    paths = good_ct(tmp_path / "ct")
    reference = plan_series(_records(paths)).read_slices([1])
    compressed(paths[1], paths[1], syntax)
    assert np.array_equal(plan_series(_records(paths)).read_slices([1]), reference)


def test_file_deleted_after_indexing(tmp_path):
    paths = good_ct(tmp_path / "ct")
    layout = plan_series(_records(paths))
    os.unlink(paths[0])
    with pytest.raises(SeriesError, match="1 of 4 chosen slices could not be read: file missing") as exc:
        layout.read_slices(range(4))
    _no_path(str(exc.value), paths)
    assert layout.read_partial(range(4)).summary().startswith("3 of 4 images could be read")
    with pytest.raises(SeriesError):
        decode_downsampled(layout, range(4), 16)


@pytest.mark.parametrize("changes", [{"BitsAllocated": 12}, {"Rows": 200}, {"BitsStored": 20},
                                     {"PixelData": b""}, {"SamplesPerPixel": 3, "PlanarConfiguration": 0,
                                                          "PhotometricInterpretation": "RGB"}])
def test_file_replaced_by_a_bad_one_after_indexing(tmp_path, changes):
    paths = good_ct(tmp_path / "ct")
    layout = plan_series(_records(paths))
    with_changes(paths[3], paths[3], **changes)  # same path, new header: Rows/Bits no decoder accepts
    with pytest.raises(SeriesError, match="1 of 2 chosen slices could not be read"):
        layout.read_slices([0, 3])


def test_file_replaced_by_garbage_after_indexing(tmp_path):
    paths = good_ct(tmp_path / "ct")
    layout = plan_series(_records(paths))
    paths[2].write_bytes(b"\0" * 500)
    with pytest.raises(SeriesError, match=r"could not be read: file changed after it was indexed \(\d+ -> 500 bytes"):
        layout.read_slices([2])
    paths[2].write_bytes(b"")
    with pytest.raises(SeriesError, match="could not be read"):
        layout.read_slices([2])


def test_mixed_image_sizes_are_a_series_error_or_a_partial_read(tmp_path):
    paths = good_ct(tmp_path / "ct")
    small = good_ct(tmp_path / "small", slices=1, size=64, seed=1)[0]  # its own SOPInstanceUID
    ds = pydicom.dcmread(small)
    ds.SeriesInstanceUID = pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID
    ds.ImagePositionPatient = [-33.6, -33.6, 30.0]
    ds.save_as(tmp_path / "ct" / "0009.dcm")
    layout = plan_series(_records([*paths, tmp_path / "ct" / "0009.dcm"]))
    assert layout.n_slices == 5
    with pytest.raises(SeriesError, match="image size 64x64 differs from the other slices' 96x96"):
        layout.read_slices(range(5))
    part = layout.read_partial(range(5))
    assert part.pixels.shape == (4, 96, 96) and [i for i, _ in part.failed] == [4]


def test_partial_read_of_nothing_readable(tmp_path):
    paths = good_ct(tmp_path / "ct", slices=2)
    layout = plan_series(_records(paths))
    for p in paths:
        p.unlink()
    part = layout.read_partial([0, 1])
    assert part.pixels.shape[0] == 0 and len(part.failed) == 2 and not part.indices
    assert part.summary().startswith("0 of 2 images could be read")
    assert layout.read_partial([]).summary() == "0 of 0 images could be read"


def test_multiframe_layout_with_a_frame_the_file_does_not_hold(tmp_path, enhanced_file):
    record = read_header(enhanced_file)
    layout = plan_series([record])
    assert layout.read_slices(range(4)).shape == (4, 48, 48)
    longer = replace(record, number_of_frames=6, frames=record.frames + record.frames[:2])
    shifted = [replace(longer.frames[i], position=(-24.0, -24.0, 2.0 * i)) for i in range(6)]
    layout = plan_series([replace(longer, frames=tuple(shifted))])
    with pytest.raises(SeriesError, match="2 of 6 chosen slices could not be read"):
        layout.read_slices(range(6))
    with pytest.raises(SeriesError):
        decode_record_downsampled(replace(longer, frames=tuple(shifted)), 16)


def test_frame_geometry_defaults_are_physical():
    assert FrameGeometry(None, None).rescale_slope == 1.0
