"""Evaluation: metrics behave, the report holds every row, ONNX and checkpoint give the same numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from synthetic_dataset import make_dataset

from mediqa.cli.main import main
from mediqa.training.eval import series_key, undegraded
from mediqa.training.eval_metrics import krocc, plcc, roc_auc, srcc

TINY = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny.yaml"


def test_metrics_on_known_cases() -> None:
    x = np.linspace(0, 4, 40)
    y = 4 / (1 + np.exp(-(x - 2) * 3))  # monotonic, non-linear
    assert srcc(x, y) == pytest.approx(1.0) and krocc(x, y) == pytest.approx(1.0)
    assert plcc(x, y) > 0.999  # the logistic fit linearises it
    assert srcc(x, -y) == pytest.approx(-1.0)
    assert plcc(x, -y) < -0.999  # an inverted scorer stays negative after the logistic fit
    assert math.isnan(srcc([1, 1, 1], [1, 2, 3]))
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert math.isnan(roc_auc([0.1, 0.2], [False, False]))


@pytest.mark.slow
def test_eval_table_and_onnx_parity(tmp_path: Path) -> None:
    data = make_dataset(tmp_path)
    out = tmp_path / "run"
    common = ["--config", str(TINY), "--set", f"data={data}", "--set", f"out={out}"]
    assert main(["train", *common, "--stage", "1", "--set", "stage1.epochs=1"]) == 0
    assert main(["train", *common, "--stage", "2", "--set", "stage2.epochs=1"]) == 0
    ckpt = out / "stage2" / "last.pt"
    assert main(["export", "onnx", str(ckpt)]) == 0
    assert main(["eval", str(ckpt), "--data", str(data), "--out", str(tmp_path / "ev_pt"),
                 "--compare", f"onnx copy={ckpt.with_suffix('.onnx')}"]) == 0
    table = (tmp_path / "ev_pt" / "table.md").read_text()
    for row in ("classical", "onnx copy", "ours"):
        assert row in table
    assert (tmp_path / "ev_pt" / "scatter_quality.png").is_file()
    assert (tmp_path / "ev_pt" / "scatter_heads.png").is_file()
    results = json.loads((tmp_path / "ev_pt" / "metrics.json").read_text())["results"]
    onnx_row, ours = results["onnx copy"], results["ours (MANIQA + prompts, crops)"]
    assert onnx_row["all"]["srcc"] == pytest.approx(ours["all"]["srcc"], abs=1e-6)
    assert set(ours["heads"]) == {"ct_dose", "mr_snr"}
    assert set(ours["modality"]) == {"CT", "MR"}
    assert ours["n_clean_series"] > 0 and 0.0 <= ours["false_alert_rate"] <= 1.0
    assert main(["eval", str(ckpt), "--data", str(data), "--out", str(tmp_path / "ev_label"), "--limit", "8",
                 "--label", "ours, 1 + 1 epochs"]) == 0
    assert "| ours, 1 + 1 epochs |" in (tmp_path / "ev_label" / "table.md").read_text()


@pytest.mark.slow
def test_eval_of_an_untrained_checkpoint_and_its_onnx_copy(tmp_path: Path) -> None:
    """The fast lane's end-to-end eval: no training, the tiny recipe's freshly initialised network."""
    import torch

    from mediqa.training.checkpoint import TrainState, save_checkpoint
    from mediqa.training.train_common import make_card, new_model
    from mediqa.training.train_config import config_dict, load_config
    from mediqa.training.trainset import open_dataset

    data = make_dataset(tmp_path)
    cfg = load_config(TINY, {"data": str(data)})
    ds = open_dataset(data)
    torch.manual_seed(0)
    model = new_model(cfg, ds)
    ckpt = tmp_path / "untrained.pt"
    save_checkpoint(ckpt, model, make_card(cfg, ds, model, stage=2), config_dict(cfg), TrainState())
    assert main(["export", "onnx", str(ckpt)]) == 0
    out = tmp_path / "ev"
    assert main(["eval", str(ckpt), "--data", str(data), "--out", str(out), "--limit", "12",
                 "--compare", f"onnx copy={ckpt.with_suffix('.onnx')}"]) == 0
    results = json.loads((out / "metrics.json").read_text())["results"]
    assert list(results) == ["classical (noise: CT GNL, MR SNR)", "onnx copy", "ours (MANIQA + prompts, crops)"]
    onnx_row, ours = results["onnx copy"], results["ours (MANIQA + prompts, crops)"]
    assert onnx_row["all"]["srcc"] == pytest.approx(ours["all"]["srcc"], abs=1e-6)
    assert results["classical (noise: CT GNL, MR SNR)"]["coverage"] > 0


HEADS = [{"name": "ct_dose", "neutral": 1.0}, {"name": "ct_blur_fwhm_mm", "neutral": 0.0},
         {"name": "mr_snr", "neutral": None}]


def test_undegraded_means_identity_level_or_no_degradation() -> None:
    def sample(kind: str, **labels: float | None) -> dict:
        return {"degradation": {"type": kind}, "labels": {"ct_dose": None, "ct_blur_fwhm_mm": None,
                                                          "mr_snr": None, **labels}}

    assert undegraded(sample("none"), HEADS)
    assert undegraded(sample("ct_dose", ct_dose=1.0, ct_blur_fwhm_mm=0.0), HEADS)  # full dose = the original
    assert not undegraded(sample("ct_dose", ct_dose=0.5, ct_blur_fwhm_mm=0.0), HEADS)
    assert not undegraded(sample("mr_noise", mr_snr=40.0), HEADS)  # no neutral SNR: labelled = noise added
    assert not undegraded(sample("ct_dose", ct_dose=1.0, unknown_head=0.0), HEADS)


def test_series_key_uses_the_level_not_per_slice_params() -> None:
    a = {"series_key": "s1", "degradation": {"type": "ct_dose", "level": 2, "params": {"expected_noise_hu": 7.1}}}
    b = {"series_key": "s1", "degradation": {"type": "ct_dose", "level": 2, "params": {"expected_noise_hu": 6.5}}}
    c = {"series_key": "s1", "degradation": {"type": "ct_dose", "level": 3, "params": {"expected_noise_hu": 7.1}}}
    assert series_key(a) == series_key(b) != series_key(c)
    no_level = {"series_key": "s1", "degradation": {"type": "mr_noise", "params": {"snr": 5.0}}}
    assert series_key(no_level) != series_key({**no_level, "degradation": {"type": "mr_noise",
                                                                            "params": {"snr": 3.0}}})
