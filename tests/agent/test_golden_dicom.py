"""Golden set from the shared real series (clean + degraded), through the agent's reader/preprocessing."""

from __future__ import annotations

import pytest

from mediqa.agent.golden import build_golden_from_dicom
from mediqa.engines.builder.pipeline import check_fp16
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.gate.golden import GoldenSet
from mediqa.engines.model_io import read_model_info
from mediqa.model_card import card_from_metadata


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_series_golden_set_and_fp16_check(tiny_onnx, tmp_path, shared_dicom):
    DATA = shared_dicom
    card = card_from_metadata(read_model_info(tiny_onnx).metadata)
    golden = build_golden_from_dicom(DATA / "dcm_qa_ct", card, slices=3, max_series=2)
    assert len(golden.cases) == 6 and {c.group for c in golden.cases} >= {"clean", "degraded/noise-strong"}
    assert golden.cases[0].inputs["image"].shape[1:] == (3, 32, 32)
    back = GoldenSet.load(golden.save(tmp_path / "g.npz"))
    assert back.sha256() == golden.sha256()
    result = check_fp16(tiny_onnx, EngineCache(tmp_path / "cache"), golden)
    assert result.gate.passed and result.gate.max_abs_diff < 0.01
