"""The learned scorer on a small hand-built ONNX model that follows the contract (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from contract_model import contract_model

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.pipeline import analyse_series
from mediqa.agent.scoring.learned import LearnedScorer
from mediqa.cli.score import register  # noqa: F401 - the command module must import cleanly
from mediqa.errors import ModelError


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "contract.onnx"
    contract_model(path)
    return path


def _config(tmp_path: Path, model: Path, retake_below: float = 2.0):
    import dataclasses

    from mediqa.agent.config import Threshold

    cfg = config_from_dict({"state_dir": str(tmp_path / "state"),
                            "scoring": {"scorer": "learned", "model": str(model), "backends": ["onnxruntime-cpu"],
                                        "allow_unevaluated_model": True}})  # the contract model has no evaluation
    # Set past validation: a limit above the 0..4 scale (every series a retake) is refused in a config file.
    thresholds = dataclasses.replace(cfg.thresholds, default=Threshold(retake_below=retake_below))
    return dataclasses.replace(cfg, thresholds=thresholds)


@pytest.mark.slow
def test_learned_scorer_scores_real_ct_and_explains(tmp_path, model_path, shared_dicom):
    cfg = _config(tmp_path, model_path, retake_below=4.5)  # every series is a retake: check the words
    scorer = LearnedScorer.from_config(cfg)
    try:
        (records,) = scan_tree(shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010").values()
        result = analyse_series(records, scorer, cfg).result
    finally:
        scorer.close()
    assert result.scorer == "learned" and result.backend
    assert len(result.slice_scores) == 7
    assert all(0.0 <= s <= 4.0 for s in result.slice_scores)
    assert result.measures["ct_dose"] == pytest.approx(0.25)  # 2 ** -2, back in the head's unit
    assert "mr_motion_rms_mm" not in result.measures  # MR head, CT series
    assert result.decision == "retake"
    assert any("noise like 25% of the reference dose for head CT" in r for r in result.reasons), result.reasons


def test_missing_card_is_a_clear_error(tmp_path, model_path):
    bare = onnx.load(model_path)
    del bare.metadata_props[:]
    plain = tmp_path / "bare.onnx"
    onnx.save(bare, plain)
    with pytest.raises(ModelError, match="no MedIQA model card"):
        LearnedScorer.from_config(_config(tmp_path, plain))


def test_score_command_json_with_learned_model(tmp_path, model_path, shared_dicom, capsys):
    from mediqa.cli.main import main

    rc = main(["score", str(shared_dicom / "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag"), "--json", "--scorer", "learned",
               "--set", f"scoring.model={model_path}", "--set", "scoring.backends=[onnxruntime-cpu]",
               "--set", "scoring.allow_unevaluated_model=true", "--state-dir", str(tmp_path / "st")])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["modality"] == "MR" and line["scorer"] == "learned" and line["instances"] == 35
    assert {"series_uid", "score", "decision", "reasons", "processing_ms"} <= set(line)
    assert np.isfinite(line["score"])


def test_model_card_json_is_strict_json_even_with_nan_metrics() -> None:
    import dataclasses

    from mediqa.agent.scoring.models import default_model_path
    from mediqa.model_card import read_card

    card = dataclasses.replace(read_card(default_model_path()),
                               metrics={"val": {"srcc_slab": float("nan"), "srcc_dose": 0.5}})
    text = card.to_json()
    assert "NaN" not in text
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert back["metrics"]["val"] == {"srcc_slab": None, "srcc_dose": 0.5}


def test_warm_up_runs_the_batch_a_series_is_scored_with(tmp_path, model_path, monkeypatch):
    """The first series after start must not pay for growing the model's buffers from a one-slice warm-up
    (measured on the 2,000-slice CT: its first pass faulted 20k pages and took 340-370 ms, 250-270 ms
    after a warm-up at the series' own batch)."""
    from mediqa.engines.backends.onnxrt import OrtBackend

    batches: list[int] = []
    run = OrtBackend._infer
    monkeypatch.setattr(OrtBackend, "_infer", lambda self, feed: batches.append(len(feed["image"])) or run(self, feed))
    cfg = _config(tmp_path, model_path)
    scorer = LearnedScorer.from_config(cfg)
    scorer.close()
    assert batches == [cfg.scoring.slices * scorer.card.preprocessing.crops_per_slice]
