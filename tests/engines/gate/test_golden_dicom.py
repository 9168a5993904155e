"""Golden set from the shared real series (clean + degraded), through the agent's reader/preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediqa.engines.builder.pipeline import check_fp16
from mediqa.engines.cache.store import EngineCache
from mediqa.engines.gate.golden import GoldenSet
from mediqa.engines.gate.golden_dicom import build_golden_from_dicom
from mediqa.engines.model_io import read_model_card, read_model_info

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "dicom"


@pytest.mark.shared_data
def test_real_series_golden_set_and_fp16_check(tiny_onnx, tmp_path):
    if not (DATA / "dcm_qa_ct").is_dir():
        pytest.skip(f"shared DICOM data not found at {DATA}")
    card = read_model_card(read_model_info(tiny_onnx))
    golden = build_golden_from_dicom(DATA / "dcm_qa_ct", card, slices=3, max_series=2)
    assert len(golden.cases) == 6 and {c.group for c in golden.cases} >= {"clean", "degraded/noise-strong"}
    assert golden.cases[0].inputs["image"].shape[1:] == (3, 32, 32)
    back = GoldenSet.load(golden.save(tmp_path / "g.npz"))
    assert back.sha256() == golden.sha256()
    result = check_fp16(tiny_onnx, EngineCache(tmp_path / "cache"), golden)
    assert result.gate.passed and result.gate.max_abs_diff < 0.01
