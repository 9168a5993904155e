"""The learned scorer on a small hand-built ONNX model that follows the contract (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mediqa.agent.commands.score import register  # noqa: F401 - the command module must import cleanly
from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.dicom.volume import plan_series
from mediqa.agent.errors import ModelError
from mediqa.agent.scoring.learned import LearnedScorer
from mediqa.agent.scoring.model_card import METADATA_KEY, ModelCard, Preprocessing
from mediqa.agent.scoring.pipeline import score_layout


def contract_model(path: Path, crop: int = 32) -> ModelCard:
    """quality = 2 + 2 * mean(image) (so brighter crops score higher); physics = [log2 dose = -2, motion = 0]."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, crop, crop])
    prompt = helper.make_tensor_value_info("prompt", TensorProto.INT64, ["N", 4])
    quality = helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["N"])
    physics = helper.make_tensor_value_info("physics", TensorProto.FLOAT, ["N", 2])
    consts = [
        helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("heads", TensorProto.FLOAT, [1, 2], [-2.0, 0.0]),
        helper.make_tensor("zero_cols", TensorProto.FLOAT, [4, 2], [0.0] * 8),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "two"], ["m2"]),
        helper.make_node("Add", ["m2", "two"], ["quality"]),
        helper.make_node("Cast", ["prompt"], ["pf"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["pf", "zero_cols"], ["pz"]),  # uses the prompt, adds nothing
        helper.make_node("Add", ["pz", "heads"], ["physics"]),
    ]
    graph = helper.make_graph(nodes, "contract", [image, prompt], [quality, physics], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    card = ModelCard(
        name="contract-test", version="1", preprocessing=Preprocessing(crop_size=crop, crops_per_slice=2),
        heads=("ct_dose", "mr_motion_rms_mm"),
        head_info={"ct_dose": {"modality": "CT", "transform": "log2", "range": [-4.32, 0.0], "neutral": 1.0},
                   "mr_motion_rms_mm": {"modality": "MR", "transform": "identity", "range": [0, 12],
                                        "neutral": 0.0}})
    helper.set_model_props(model, {METADATA_KEY: card.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return card


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "contract.onnx"
    contract_model(path)
    return path


def _config(tmp_path: Path, model: Path, retake_below: float = 2.0):
    return config_from_dict({"state_dir": str(tmp_path / "state"),
                             "thresholds": {"default": {"retake_below": retake_below}},
                             "scoring": {"scorer": "learned", "model": str(model), "backends": ["onnxruntime-cpu"]}})


def test_learned_scorer_scores_real_ct_and_explains(tmp_path, model_path, shared_dicom):
    cfg = _config(tmp_path, model_path, retake_below=4.5)  # every series is a retake: check the words
    scorer = LearnedScorer.from_config(cfg)
    try:
        (records,) = scan_tree(shared_dicom / "dcm_qa_ct/In/Philips/S21570/S2010").values()
        result = score_layout(plan_series(records), scorer, cfg)
    finally:
        scorer.close()
    assert result.scorer == "learned" and result.backend
    assert len(result.slice_scores) == 7
    assert all(0.0 <= s <= 4.0 for s in result.slice_scores)
    assert result.measures["ct_dose"] == pytest.approx(0.25)  # 2 ** -2, back in the head's unit
    assert "mr_motion_rms_mm" not in result.measures  # MR head, CT series
    assert result.decision == "retake"
    assert any("noise like 25% of the reference dose" in r for r in result.reasons), result.reasons


def test_missing_card_is_a_clear_error(tmp_path, model_path):
    bare = onnx.load(model_path)
    del bare.metadata_props[:]
    plain = tmp_path / "bare.onnx"
    onnx.save(bare, plain)
    with pytest.raises(ModelError, match="no MedIQA model card"):
        LearnedScorer.from_config(_config(tmp_path, plain))


def test_score_command_json_with_learned_model(tmp_path, model_path, shared_dicom, capsys):
    from mediqa.agent.cli import main

    rc = main(["score", str(shared_dicom / "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag"), "--json", "--scorer", "learned",
               "--set", f"scoring.model={model_path}", "--set", "scoring.backends=[onnxruntime-cpu]",
               "--state-dir", str(tmp_path / "st")])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["modality"] == "MR" and line["scorer"] == "learned" and line["instances"] == 35
    assert {"series_uid", "score", "decision", "reasons", "processing_ms"} <= set(line)
    assert np.isfinite(line["score"])
