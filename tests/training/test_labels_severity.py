"""Severity ceilings on the proxy label, and ``mediqa data relabel`` (issue 14: severe damage must alert).

The defect: MS-SSIM on a body CT's 400 HU window called 10 % dose "acceptable" (>= 2), and structural MR
with 4 mm motion kept a score near 3, so the model could not learn that the grid's top must alert.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_paths import TINY_CONFIG
from data_phantoms import ct_head

from mediqa.cli.main import main
from mediqa.training.datagen.builder import build
from mediqa.training.datagen.config import load_data_config
from mediqa.training.datagen.relabel import relabel
from mediqa.training.labels.heads import head_labels
from mediqa.training.labels.proxy import ProxyMapping, clinical_window, proxy_metric
from mediqa.training.labels.severity import CEILINGS, severity_ceiling

RETAKE_BELOW = 2.0  # configs/train/edge.yaml thresholds.retake_below
# The grid's top of every family in configs/data/default.yaml, as (kind, params).
GRID_TOP = [
    ("ct_dose", {"dose_fraction": 0.1}), ("ct_dose", {"dose_fraction": 0.05}),
    ("ct_sparse", {"undersampling": 6.0}), ("ct_blur", {"fwhm_mm": 2.4, "slab_slices": 1.0}),
    ("mr_noise", {"target_snr": 3.0}), ("mr_motion", {"motion_rms_mm": 2.1}),
    ("mr_ghost", {"intensity": 0.5}), ("mr_spike", {"relative_amplitude": 0.2}),
    ("mr_bias", {"strength": 0.5}), ("mr_undersample", {"acceleration": 8.0}),
    ("mr_truncation", {"keep_fraction": 0.3}),
]
MILD = [("ct_dose", {"dose_fraction": 0.75}), ("mr_noise", {"target_snr": 40.0}),
        ("ct_blur", {"fwhm_mm": 0.8, "slab_slices": 1.0}), ("none", {})]


def _labels(kind: str, params: dict[str, float]) -> dict[str, float | None]:
    modality = "CT" if kind.startswith("ct_") else "MR"
    return head_labels(modality, kind, params) if kind != "none" else head_labels("MR", "none", {})


@pytest.mark.parametrize(("kind", "params"), GRID_TOP, ids=[k for k, _ in GRID_TOP])
def test_the_grids_top_is_capped_below_the_retake_threshold(kind: str, params: dict[str, float]) -> None:
    assert severity_ceiling(kind, _labels(kind, params)) < RETAKE_BELOW


@pytest.mark.parametrize(("kind", "params"), MILD, ids=[k for k, _ in MILD])
def test_mild_damage_is_not_capped(kind: str, params: dict[str, float]) -> None:
    assert severity_ceiling(kind, _labels(kind, params)) == 4.0


def test_ceilings_fall_with_severity_and_slabs_are_uncapped() -> None:
    for ceiling in CEILINGS.values():
        xs = np.linspace(ceiling.anchors[0][0], ceiling.anchors[-1][0], 40)
        ys = [ceiling(float(x)) for x in xs]
        steps = np.diff(ys)  # dose and SNR: more is better; every other head: more is worse
        assert (steps >= -1e-12).all() or (steps <= 1e-12).all(), ceiling.head
        assert max(ys) == 4.0 and min(ys) < RETAKE_BELOW, ceiling.head
    assert severity_ceiling("ct_blur", _labels("ct_blur", {"fwhm_mm": 0.0, "slab_slices": 5.0})) == 4.0
    # image-domain noise is capped through its equivalent dose, as the dose head reads it
    assert severity_ceiling("ct_noise", {"ct_dose": 0.05}) < RETAKE_BELOW


def test_ten_percent_dose_on_a_wide_window_was_acceptable_and_is_now_capped() -> None:
    clean = ct_head(160)
    noisy = clean + np.random.default_rng(3).normal(0, 10.0, clean.shape)  # ~3x a routine scan's noise
    msssim_score = ProxyMapping()(proxy_metric(clean, noisy, clinical_window("CT", "abdomen", clean)))
    assert msssim_score >= RETAKE_BELOW  # the flaw: the proxy alone calls it acceptable
    assert min(msssim_score, severity_ceiling("ct_dose", {"ct_dose": 0.1})) < RETAKE_BELOW


@pytest.fixture(scope="module")
def micro_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["name"] = "micro"
    raw["sources"] = [s for s in raw["sources"] if s["name"] in (
        "pydicom_ct_small", "pydicom_mr_small", "pydicom_mr_siemens_abdomen")]
    raw["splits"]["val_groups"] = []
    path = tmp_path_factory.mktemp("micro") / "micro.yaml"
    path.write_text(yaml.safe_dump(raw))
    return build(load_data_config(path), tmp_path_factory.mktemp("m"), workers=1, progress=False).path


def test_a_build_labels_single_slices_3d_and_caps_quality(micro_build: Path) -> None:
    m = json.loads((micro_build / "manifest.json").read_text())
    assert {s["prompt"]["dimension"] for s in m["samples"]} == {"3D"}  # 2D means projection imaging
    assert "severity ceiling" in m["quality"]["rule"]
    for s in m["samples"]:
        assert s["quality"] <= s["quality_ceiling"] + 1e-9
        assert s["quality_ceiling"] == pytest.approx(
            severity_ceiling(s["degradation"]["type"], s["labels"]), abs=1e-4)


def test_relabel_rewrites_an_old_manifest_and_links_the_arrays(micro_build: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for name in ("images.npy", "clean.npy"):
        (old / name).write_bytes((micro_build / name).read_bytes())
    m = json.loads((micro_build / "manifest.json").read_text())
    for s in m["samples"]:  # what the previous code wrote: uncapped labels, single slices "2D"
        s["quality"] = ProxyMapping()(s["quality_metric"])
        s.pop("quality_ceiling")
        s["prompt"]["dimension"] = "2D"
    m.pop("simulation_code")  # made before the digest was recorded
    (old / "manifest.json").write_text(json.dumps(m))
    assert main(["data", "relabel", str(old), "--out", str(tmp_path / "new")]) == 0
    new = Path(capsys.readouterr().out.strip().splitlines()[-1])
    n = json.loads((new / "manifest.json").read_text())
    assert new.name == f"{n['name']}-{n['version']}" and n["relabelled_from"]["version"] == m["version"]
    assert new.name == micro_build.name  # the folder a build by this code writes: train and eval find it
    assert [s["quality"] for s in n["samples"]] == pytest.approx(
        [s["quality"] for s in json.loads((micro_build / "manifest.json").read_text())["samples"]], abs=1e-4)
    assert {s["prompt"]["dimension"] for s in n["samples"]} == {"3D"}
    assert (new / "images.npy").stat().st_ino == (old / "images.npy").stat().st_ino
    assert relabel(old, tmp_path / "new") == new  # same input, same code: same folder


def test_relabel_refuses_arrays_simulated_by_other_code(micro_build: Path, tmp_path: Path) -> None:
    from mediqa.errors import ConfigError

    old = tmp_path / "old"
    old.mkdir()
    m = json.loads((micro_build / "manifest.json").read_text())
    m["simulation_code"] = "0123456789"
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="simulated by other code"):
        relabel(old, tmp_path / "new")


def test_relabel_of_a_folder_without_manifest_says_what_to_give(tmp_path: Path) -> None:
    from mediqa.errors import ConfigError

    with pytest.raises(ConfigError, match="not a built data set"):
        relabel(tmp_path)
