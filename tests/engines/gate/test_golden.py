"""Golden set file: versioned, round-trips exactly, validated."""

from __future__ import annotations

import numpy as np
import pytest

from mediqa.engines.gate.golden import GoldenSet, golden_from_inputs
from mediqa.errors import ModelError


def test_round_trip_keeps_inputs_names_and_hash(golden, tmp_path):
    path = golden.save(tmp_path / "golden.npz")
    back = GoldenSet.load(path)
    assert [c.name for c in back.cases] == [c.name for c in golden.cases]
    assert back.sha256() == golden.sha256()
    assert back.cases[0].inputs["prompt"].dtype == np.int64
    assert back.provenance["source"].startswith("synthetic")


def test_wrong_format_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", __meta__=np.frombuffer(b'{"format": "x", "version": 9}', np.uint8))
    with pytest.raises(ModelError, match="not a mediqa-golden"):
        GoldenSet.load(tmp_path / "other.npz")


def test_validation():
    x = {"image": np.zeros((2, 1), np.float32)}
    with pytest.raises(ModelError, match="unique"):
        golden_from_inputs([("a", x, "clean"), ("a", x, "degraded")], {})
    with pytest.raises(ModelError, match="batch"):
        golden_from_inputs([("a", {"image": np.zeros((2, 1)), "prompt": np.zeros((3, 4))}, "clean")], {})
    with pytest.raises(ModelError, match="inputs"):
        golden_from_inputs([("a", x, "clean"), ("b", {"other": np.zeros((2, 1))}, "degraded")], {})


def test_check_against_model_inputs(golden):
    golden.check_against(["prompt", "image"])
    with pytest.raises(ModelError, match="do not match"):
        golden.check_against(["image"])
