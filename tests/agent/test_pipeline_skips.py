"""Skipped, never silently dropped: localizers, phase images and maps through the one chain.

A GE 3-plane localizer got a RETAKE (1.68) and the classical scorer scored field-map phase images 0.0
(issue 14). Generated series go through ``analyse_series`` as an export would.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_pipeline_support import write_series

from mediqa.agent.config import config_from_dict
from mediqa.agent.dicom.index import scan_tree
from mediqa.agent.pipeline import analyse_series
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.errors import ConfigError, SeriesError

AXIAL, SAGITTAL, CORONAL = (1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)


def _head_mr(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64] - 32.0
    head = np.where(np.hypot(xx, yy) < 24, 400.0, 0.0) + 100.0 * (np.hypot(xx, yy) < 10)
    return np.abs(head[None] + rng.normal(0, 8, (n, 64, 64)) + 1j * rng.normal(0, 8, (n, 64, 64)))


def _phase(n: int, seed: int = 1) -> np.ndarray:
    """Stored like a Siemens phase image: 0..4095 for -pi..pi, wrapping."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64] / 64.0
    phi = np.angle(np.exp(1j * (12 * xx + 6 * yy)))[None] + rng.normal(0, 0.5, (n, 64, 64))
    return (np.angle(np.exp(1j * phi)) + np.pi) / (2 * np.pi) * 4095


def _config(tmp_path: Path, **ingest: object):
    return config_from_dict({"state_dir": str(tmp_path / "state"), "scoring": {"scorer": "classical"},
                             "ingest": ingest})


def _analyse(folder: Path, cfg):
    (records,) = scan_tree(folder, skip_derived=cfg.ingest.skip_derived).values()
    return analyse_series(records, ClassicalScorer(), cfg).result


def test_ge_three_plane_localizer_is_skipped_by_its_planes(tmp_path):
    planes = [AXIAL] * 3 + [SAGITTAL] * 3 + [CORONAL] * 3
    write_series(tmp_path / "loc", _head_mr(9), "MR", description="", orientations=planes,
                 image_type=("ORIGINAL", "PRIMARY", "OTHER"))
    result = _analyse(tmp_path / "loc", _config(tmp_path))
    assert result.decision == "skipped" and math.isnan(result.score)
    assert result.reasons == ("not for quality scoring: a multi-plane localizer (3 slice planes in one series)",)


def test_localizer_by_name_is_skipped_unless_localizers_are_scored(tmp_path):
    write_series(tmp_path / "scout", _head_mr(5), "MR", description="AAHScout_MPR_sag",
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    result = _analyse(tmp_path / "scout", _config(tmp_path))
    assert result.decision == "skipped" and "localizer/scout (named 'aahscout')" in result.reasons[0]
    assert _analyse(tmp_path / "scout", _config(tmp_path, skip_localizers=False)).decision in ("ok", "retake")


def test_field_map_phase_is_skipped_and_never_scored_by_the_classical_scorer(tmp_path):
    write_series(tmp_path / "phase", _phase(6), "MR", description="gre_field_mapping",
                 image_type=("ORIGINAL", "PRIMARY", "P", "ND"))
    result = _analyse(tmp_path / "phase", _config(tmp_path))
    assert result.decision == "skipped" and "phase images" in result.reasons[0]
    # With the skip turned off, the classical scorer still refuses phase (it read wraps as SNR about 0).
    with pytest.raises(SeriesError, match="phase wraps are not noise"):
        _analyse(tmp_path / "phase", _config(tmp_path, skip_kinds=[]))


def test_magnitude_and_phase_in_one_series_scores_the_magnitude(tmp_path):
    mag = write_series(tmp_path / "mixed", _head_mr(6), "MR", description="gre_2echo",
                       image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    phase = write_series(tmp_path / "p", _phase(6), "MR", description="gre_2echo",
                         image_type=("ORIGINAL", "PRIMARY", "P", "ND"))
    (series_uid,) = scan_tree(mag[0].parent)
    for k, path in enumerate(phase):  # same series as the magnitude images
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.save_as(tmp_path / "mixed" / f"p{k}.dcm", enforce_file_format=True)
    result = _analyse(tmp_path / "mixed", _config(tmp_path))
    assert result.decision in ("ok", "retake") and math.isfinite(result.score)
    assert result.notices[0] == "6 of 12 images not scored (6 phase)"


def test_asl_cbf_map_typed_original_is_skipped(tmp_path):
    write_series(tmp_path / "cbf", _head_mr(5), "MR", description="pCASL",
                 image_type=("ORIGINAL", "PRIMARY", "ASL", "RELCBF"))
    result = _analyse(tmp_path / "cbf", _config(tmp_path))
    assert result.decision == "skipped" and "parametric map (ImageType RELCBF)" in result.reasons[0]


def test_adc_map_is_skipped_even_when_derived_images_are_scored(tmp_path):
    write_series(tmp_path / "adc", _head_mr(5), "MR", description="ep2d_diff_ADC",
                 image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"))
    result = _analyse(tmp_path / "adc", _config(tmp_path, skip_derived=False))
    assert result.decision == "skipped" and "parametric map" in result.reasons[0]
    # Trace-weighted images are diffusion-weighted images: scored once derived images are let through.
    write_series(tmp_path / "trace", _head_mr(5), "MR", description="ep2d_diff_TRACEW",
                 image_type=("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "ND"))
    assert _analyse(tmp_path / "trace", _config(tmp_path, skip_derived=False)).decision in ("ok", "retake")


def test_an_unknown_skip_kind_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'phase'"):
        _config(tmp_path, skip_kinds=["phse"])


def test_the_running_agent_reports_a_localizer_as_skipped(tmp_path):
    """Through the service loop: one result, ``skipped`` with its reason, in results.jsonl (not dropped)."""
    from test_reliability_support import Clock, agent, jsonl, settle

    export, state, clock = tmp_path / "export", tmp_path / "state", Clock()
    planes = [AXIAL] * 3 + [SAGITTAL] * 3 + [CORONAL] * 3
    write_series(export / "loc", _head_mr(9), "MR", description="", orientations=planes,
                 image_type=("ORIGINAL", "PRIMARY", "OTHER"))
    results: list = []
    running = agent(state, export, clock, results)
    try:
        settle(running, clock, passes=8, dt=3.0)
    finally:
        running.close()
    assert [r.decision for r in results] == ["skipped"]
    assert [line["decision"] for line in jsonl(state)] == ["skipped"]
    assert "multi-plane localizer" in results[0].reasons[0]
