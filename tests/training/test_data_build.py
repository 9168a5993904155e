"""``mediqa data build`` on the tiny config: format, splits, exact labels, byte-identical rebuilds.

The tiny build takes ~15 s on 2 cores, so its checks are in the slow lane; the same checks also run on a
micro build (three single pydicom slices, one process, ~2 s) in the fast lane.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_paths import TINY_CONFIG

from mediqa.cli.main import main
from mediqa.training.datagen.builder import build
from mediqa.training.datagen.config import load_data_config

HEAD_PARAM = {"ct_dose": ("ct_dose", "dose_fraction"), "mr_snr": ("mr_noise", "target_snr"),
              "mr_ghost": ("mr_ghost", "intensity")}
# The tiny config's package-shipped single slices, held-out CT and MR plus one training slice (no MNI152).
MICRO_SOURCES = ("pydicom_ct_small", "pydicom_mr_small", "pydicom_mr_siemens_abdomen")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(load_data_config(TINY_CONFIG), tmp_path_factory.mktemp("a"), workers=2, progress=False).path


@pytest.fixture(scope="module")
def micro_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["name"] = "micro"
    raw["sources"] = [s for s in raw["sources"] if s["name"] in MICRO_SOURCES]
    raw["splits"]["val_groups"] = []
    path = tmp_path_factory.mktemp("micro") / "micro.yaml"
    path.write_text(yaml.safe_dump(raw))
    return build(load_data_config(path), tmp_path_factory.mktemp("m"), workers=1, progress=False).path


@pytest.fixture(params=[pytest.param("micro_build", id="micro"),
                        pytest.param("tiny_build", id="tiny", marks=pytest.mark.slow)])
def built(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(request.param)
    return path


@pytest.mark.slow
def test_rebuild_gives_the_same_bytes_whatever_the_worker_count(tiny_build: Path,
                                                                tmp_path: Path) -> None:
    a = tiny_build
    b = build(load_data_config(TINY_CONFIG), tmp_path, workers=1, progress=False).path
    assert a.name == b.name
    for name in ("images.npy", "clean.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma == mb


@pytest.mark.slow
def test_manifest_follows_the_format(built: Path) -> None:
    path = built
    m = json.loads((path / "manifest.json").read_text())
    images = np.load(path / "images.npy")
    assert images.dtype == np.float32 and images.shape == (len(m["samples"]), m["crop_size"], m["crop_size"])
    assert path.name == f"{m['name']}-{m['version']}"
    assert "not an expert score" in m["quality"]["kind"] and m["quality"]["scale"] == [0, 4]
    assert [h["name"] for h in m["heads"]][0] == "ct_dose"
    assert m["counts"]["total"] == len(m["samples"])
    checked: set[str] = set()
    for i, s in enumerate(m["samples"]):
        assert s["index"] == i and s["split"] in ("train", "val", "test")
        assert 0.0 <= s["quality"] <= 4.0 and set(s["labels"]) == {h["name"] for h in m["heads"]}
        assert (s["norm"] is None) == (s["modality"] == "CT")
        for head, (kind, param) in HEAD_PARAM.items():
            if s["degradation"]["type"] == kind:
                assert s["labels"][head] == s["degradation"]["params"][param]
                checked.add(head)
        if s["degradation"]["type"] == "ct_dose" and s["degradation"]["params"]["dose_fraction"] == 1.0:
            assert s["quality"] == 4.0
    assert checked == set(HEAD_PARAM)


def test_splits_never_cut_a_series_and_hold_out_vendors(built: Path) -> None:
    m = json.loads((built / "manifest.json").read_text())
    split_of: dict[str, set[str]] = {}
    for s in m["samples"]:
        split_of.setdefault(s["series_key"], set()).add(s["split"])
    assert all(len(v) == 1 for v in split_of.values())
    held_out = set(m["config"]["splits"]["test_vendors"])
    for s in m["samples"]:
        assert (s["split"] == "test") == (s["vendor"] in held_out)
    assert {s["modality"] for s in m["samples"] if s["split"] == "test"} == {"CT", "MR"}


@pytest.mark.slow
def test_preview_cli_writes_a_png(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert main(["data", "preview", str(built), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
