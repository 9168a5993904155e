"""Body CT sources: the procedural phantom, the native full-dose scan and the TotalSegmentator volumes."""

from __future__ import annotations

import numpy as np
import pytest
from data_paths import SHARED_DICOM

from mediqa.schema import build_dataclass
from mediqa.training.datagen.body_phantom import GRID, SPACING_MM, phantom_slice, phantom_volume
from mediqa.training.datagen.config import DataConfig, check
from mediqa.training.datagen.sources import load_source, source_available
from mediqa.training.degrade.ct_native import (
    REFERENCE_NOISE_HU,
    native_scan,
    target_noise_hu,
    water_equivalent_diameter_mm,
)


@pytest.mark.slow
def test_phantom_is_deterministic_with_a_seed_and_varies_between_patients():
    a = phantom_volume("abdomen", 3, seed=7, contrast=False)
    b = phantom_volume("abdomen", 3, seed=7, contrast=False)
    assert a.shape == (3, GRID, GRID) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, phantom_volume("abdomen", 3, seed=8, contrast=False))
    widths = [int((s[GRID // 2] > -500).sum()) for s in a]  # body width on the centre row, in pixels
    assert len(set(widths)) == 3, widths  # every slice is another patient


@pytest.mark.slow
@pytest.mark.parametrize("region", ["chest", "abdomen"])
def test_phantom_hu_ranges_are_those_of_body_ct(region):
    img = phantom_slice(region, np.random.default_rng(3), contrast=True)
    assert img.min() >= -1001 and img.max() <= 1000
    assert img[0, 0] == pytest.approx(-1000.0)  # air outside the body
    body = img > -500
    assert 0.2 < body.mean() < 0.8
    fat = ((img > -130) & (img < -70)).sum()
    soft = ((img > 0) & (img < 100)).sum()
    bone = (img > 200).sum()
    assert fat > 500 and soft > 2000 and bone > 100
    if region == "chest":
        assert ((img > -900) & (img < -700)).sum() > 5000  # lungs


@pytest.mark.slow
def test_contrast_brightens_vessels_and_organs():
    plain = phantom_slice("abdomen", np.random.default_rng(5), contrast=False)
    enhanced = phantom_slice("abdomen", np.random.default_rng(5), contrast=True)
    assert ((enhanced > 130) & (enhanced < 400)).sum() > ((plain > 130) & (plain < 400)).sum()


def test_larger_patients_get_more_noise_and_the_routine_level_at_the_reference_size():
    assert target_noise_hu("abdomen", 280.0) == pytest.approx(REFERENCE_NOISE_HU["abdomen"])
    assert target_noise_hu("abdomen", 360.0) > target_noise_hu("abdomen", 280.0) > target_noise_hu("abdomen", 200.0)
    assert target_noise_hu("head", 180.0) < target_noise_hu("abdomen", 180.0)


def test_water_equivalent_diameter_of_a_water_disc():
    yy, xx = np.mgrid[:200, :200]
    disc = np.where((yy - 100) ** 2 + (xx - 100) ** 2 <= 80**2, 0.0, -1000.0)
    assert water_equivalent_diameter_mm(disc, 1.0) == pytest.approx(160.0, rel=0.02)


@pytest.mark.slow
def test_native_scan_gives_the_target_noise_in_soft_tissue():
    clean = phantom_slice("abdomen", np.random.default_rng(11), contrast=False).astype(np.float64)
    scan = native_scan(clean, SPACING_MM, "abdomen", 180, np.random.default_rng(0))
    tissue = (clean > 20) & (clean < 80)
    measured = float(np.std((scan.image - clean)[tissue]))
    assert measured == pytest.approx(scan.target_noise_hu, rel=0.15)
    assert np.array_equal(scan.projection.image_hu, scan.image)


def _config(sources: list[dict]) -> DataConfig:
    cfg = build_dataclass(DataConfig, {"name": "t", "sources": sources}, "")
    check(cfg)
    return cfg


@pytest.mark.slow
def test_phantom_source_loads_as_clean_anatomy_without_slab_neighbours():
    cfg = _config([{"name": "phantom_chest", "kind": "body_phantom", "path": "chest", "anatomy": "chest",
                    "image_type": "ct_soft", "slices": 2, "slice_range": [0.0, 1.0]}])
    src = load_source(cfg.sources[0], cfg.data_root_path())
    assert src.clean_anatomy and src.modality == "CT" and src.slice_step_mm is None
    assert src.volume.shape == (2, GRID, GRID) and src.chosen_slices() == [0, 1]


def test_phantom_region_is_checked():
    from mediqa.errors import ConfigError

    with pytest.raises(ConfigError, match="path"):
        _config([{"name": "p", "kind": "body_phantom", "path": "knee"}])


@pytest.mark.slow
@pytest.mark.parametrize("name,anatomy", [("abdomen_ct_3mm.nii.gz", "abdomen"),
                                          ("chest_ct_aorta_crop_1.5mm.nii.gz", "chest")])
def test_totalsegmentator_volume_loads_as_axial_body_ct(name, anatomy):
    path = SHARED_DICOM.parent / "nifti" / "totalsegmentator" / name
    if not path.is_file():
        pytest.skip(f"TotalSegmentator volume not found at {path} (put ../shared next to the repository)")
    cfg = _config([{"name": "ts", "kind": "nifti_ct", "path": f"nifti/totalsegmentator/{name}",
                    "anatomy": anatomy, "optional": True}])
    spec = cfg.sources[0]
    assert source_available(spec, SHARED_DICOM)
    src = load_source(spec, SHARED_DICOM)
    assert src.clean_anatomy and src.spacing_mm == (0.8, 0.8)
    mid = src.volume[src.volume.shape[0] // 2]
    assert mid.min() >= -1030 and 100 < mid.max() < 4000
    body_rows = np.where((mid > -500).any(axis=1))[0]
    assert body_rows.size > 100  # a body, not a sliver
    if anatomy == "abdomen":  # radiological orientation: the spine (bone) is in the lower (posterior) half
        rows = np.where((mid > 300).any(axis=1))[0]
        assert np.median(rows) > mid.shape[0] / 2


def test_absent_nifti_source_is_not_available(tmp_path):
    cfg = _config([{"name": "ts", "kind": "nifti_ct", "path": "nifti/none.nii.gz", "optional": True}])
    assert not source_available(cfg.sources[0], tmp_path / "dicom")


@pytest.mark.slow
def test_a_phantom_slice_at_its_routine_dose_is_labelled_good_and_a_tenth_of_it_worse():
    from mediqa.measures import global_noise_level
    from mediqa.training.datagen.tasks import Task, run_task

    cfg = build_dataclass(DataConfig, {
        "name": "t", "seed": 3, "sources": [{"name": "phantom_abdomen", "kind": "body_phantom", "path": "abdomen",
                                             "anatomy": "abdomen", "image_type": "ct_soft", "slices": 1,
                                             "slice_range": [0.0, 1.0]}],
        "ct": {"projection_views": 120, "dose_fractions": [1.0, 0.1], "sparse_views": [], "blur_fwhm_mm": [],
               "image_noise_hu": []}}, "")
    check(cfg)
    made = run_task((Task("ct_slice", cfg.sources[0], 0), cfg))
    samples = {s.meta["degradation"]["params"]["dose_fraction"]: s for s in made}
    full, tenth = samples[1.0], samples[0.1]
    assert full.meta["quality"] == 4.0  # the routine scan is the reference: good, not "noisier than a head CT"
    assert tenth.meta["quality"] < full.meta["quality"] - 1.0
    noise = global_noise_level(full.image[None], SPACING_MM)
    assert 6.0 < noise < 25.0  # a body scan's noise, not a noise-free phantom and not a head CT's 4 HU
    assert np.array_equal(full.image, full.clean)
