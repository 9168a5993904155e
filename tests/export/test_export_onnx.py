"""Export checks itself: names, dynamic batch, opset, fused LayerNorm, parity, card in metadata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mediqa.cli.main import main
from mediqa.errors import ModelError
from mediqa.export.onnx import check_graph, export_onnx
from mediqa.model_card import METADATA_KEY, ModelCard, Preprocessing, read_card
from mediqa.training.checkpoint import TrainState, save_checkpoint
from mediqa.training.model import ArchConfig, arch_dict, build_model

TINY = ArchConfig(size="tiny", img_size=32, patch=8, vit_dim=16, vit_heads=2, taps=(0, 1), embed_dim=16,
                  dim_mlp=16, swin_heads=(2, 2), window=2, num_physics=2)


def _model_and_card() -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    model = build_model(TINY, torch.tensor([[-4.0, 0.0], [0.0, 6.0]]))
    card = ModelCard(architecture=arch_dict(TINY), preprocessing=Preprocessing(crop_size=32),
                     heads=("ct_dose", "mr_snr"), thresholds={"retake_below": 2.0, "worst_slice_below": 1.0})
    return model, card


@pytest.mark.slow
def test_export_contract_and_parity(tmp_path: Path) -> None:
    model, card = _model_and_card()
    report = export_onnx(model, card, tmp_path / "m.onnx")
    assert report.max_abs_diff_quality < 1e-4 and report.max_abs_diff_physics < 1e-4
    proto = onnx.load(str(report.path))
    assert [i.name for i in proto.graph.input] == ["image", "prompt"]
    assert [o.name for o in proto.graph.output] == ["quality", "physics"]
    assert proto.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert report.layernorm_ops == sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert read_card(report.path) == card
    assert any(p.key == METADATA_KEY for p in proto.metadata_props)
    umask = os.umask(0)
    os.umask(umask)
    assert report.path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not mkstemp's 0600
    sess = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for n in (1, 7):  # dynamic batch
        q, phys = sess.run(None, {"image": np.zeros((n, 3, 32, 32), np.float32),
                                  "prompt": np.zeros((n, 4), np.int64)})
        assert q.shape == (n,) and phys.shape == (n, 2)


@pytest.mark.slow
def test_decomposed_layernorm_is_refused(tmp_path: Path) -> None:
    model, card = _model_and_card()
    report = export_onnx(model, card, tmp_path / "m.onnx")
    proto = onnx.load(str(report.path))
    with pytest.raises(ModelError, match="decomposed"):
        check_graph(proto, 17, report.layernorm_ops + 1)
    with pytest.raises(ModelError, match="opset"):
        export_onnx(model, card, tmp_path / "old.onnx", opset=16)


@pytest.mark.slow
def test_cli_export_from_checkpoint(tmp_path: Path) -> None:
    model, card = _model_and_card()
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, model, card, {"seed": 0}, TrainState(epoch=1))
    assert main(["export", "onnx", str(ckpt), "--out", str(tmp_path / "out" / "edge.onnx")]) == 0
    assert (tmp_path / "out" / "edge.onnx").is_file()
    assert ModelCard.from_json((tmp_path / "out" / "edge.json").read_text()) == card
