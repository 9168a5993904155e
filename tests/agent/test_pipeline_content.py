"""The content check in the one chain: nothing to assess is never "ok", with either scorer.

The learned model scored air-only CT 3.9 "ok" and noise-only EPI 2.0-2.2 "ok" (issue 14): these
series go through ``analyse_series`` exactly as a scanner's export would, and must come out as
``unscored`` ("no anatomy found") or RETAKE ("no image content: pure noise"), whichever scorer runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_pipeline_support import head_phantom, rician_noise, write_series

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.pipeline import analyse_series
from mediqa.agent.scoring.base import Scorer
from mediqa.agent.scoring.factory import make_scorer

RNG = np.random.default_rng(14)


def _config(tmp_path: Path, scorer: str):
    return config_from_dict({"state_dir": str(tmp_path / "state"),
                             "scoring": {"scorer": scorer, "backends": ["onnxruntime-cpu"],
                                         "allow_unevaluated_model": True}})


@pytest.fixture(scope="module", params=["classical", "learned"])
def scorer_and_config(request, tmp_path_factory) -> Iterator[tuple[Scorer, object]]:
    cfg = _config(tmp_path_factory.mktemp("content"), request.param)  # loaded once per module: the model
    scorer = make_scorer(cfg)
    try:
        yield scorer, cfg
    finally:
        scorer.close()


def _analyse(folder: Path, scorer: Scorer, cfg):
    (records,) = scan_tree(folder).values()
    return analyse_series(records, scorer, cfg).result


@pytest.mark.slow
def test_air_only_ct_is_unscored_no_anatomy(tmp_path, scorer_and_config):
    scorer, cfg = scorer_and_config
    write_series(tmp_path / "air", np.full((10, 128, 128), -1000.0), "CT", description="empty table")
    result = _analyse(tmp_path / "air", scorer, cfg)
    assert result.decision == "unscored" and math.isnan(result.score)
    assert result.reasons[0].startswith("no anatomy found"), result.reasons


@pytest.mark.slow
def test_noise_in_the_air_range_ct_is_never_ok(tmp_path, scorer_and_config):
    """Pixels noise around air (the issue's 3.90-3.99 "ok"): no body at all."""
    scorer, cfg = scorer_and_config
    write_series(tmp_path / "air_noise", -1000.0 + RNG.normal(0.0, 60.0, (10, 128, 128)), "CT",
                 description="HEAD")
    result = _analyse(tmp_path / "air_noise", scorer, cfg)
    assert result.decision == "unscored", (result.decision, result.score)
    assert result.reasons[0].startswith("no anatomy found"), result.reasons


@pytest.mark.slow
def test_wide_noise_ct_is_a_retake_pure_noise(tmp_path, scorer_and_config):
    """Noise spread over the body range (half the pixels above -500 HU): something there, but no image."""
    scorer, cfg = scorer_and_config
    write_series(tmp_path / "noise", RNG.uniform(-1000.0, 500.0, (10, 128, 128)), "CT", description="HEAD")
    result = _analyse(tmp_path / "noise", scorer, cfg)
    assert result.decision == "retake" and result.score == 0.0
    assert result.reasons[0].startswith("no image content: pure noise"), result.reasons


@pytest.mark.slow
def test_noise_only_epi_is_a_retake_pure_noise(tmp_path, scorer_and_config):
    scorer, cfg = scorer_and_config
    write_series(tmp_path / "epi", rician_noise(12), "MR", description="ep2d_bold_rest",
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
                 extra={"ScanningSequence": "EP", "SequenceVariant": "SK", "RepetitionTime": 2000.0,
                        "EchoTime": 30.0})
    result = _analyse(tmp_path / "epi", scorer, cfg)
    assert result.decision == "retake", (result.decision, result.score)
    assert result.reasons[0].startswith("no image content: pure noise"), result.reasons
    assert "content_structure" in result.measures


@pytest.mark.slow
def test_a_body_with_content_is_scored_as_before(tmp_path, scorer_and_config):
    """The check only speaks when there is nothing to assess: a phantom head is scored by the scorer."""
    scorer, cfg = scorer_and_config
    write_series(tmp_path / "head", head_phantom(10), "CT", description="HEAD")
    result = _analyse(tmp_path / "head", scorer, cfg)
    assert result.decision in ("ok", "retake") and math.isfinite(result.score)
    assert not any(r.startswith(("no anatomy", "no image content")) for r in result.reasons)
