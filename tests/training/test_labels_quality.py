"""Proxy quality labels (MS-SSIM on the clinical window) and exact upstream head labels."""

from __future__ import annotations

import numpy as np
import pytest
from data_phantoms import ct_head

from mediqa.training.labels.heads import HEADS, head_labels
from mediqa.training.labels.msssim import ms_ssim
from mediqa.training.labels.proxy import ProxyMapping, clinical_window, proxy_metric


def test_ms_ssim_is_one_for_identical_and_falls_with_noise() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((160, 160))
    assert ms_ssim(img, img) == pytest.approx(1.0)
    values = [ms_ssim(img, np.clip(img + rng.normal(0, s, img.shape), 0, 1)) for s in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2]
    with pytest.raises(ValueError):
        ms_ssim(img, img[:100])


def test_proxy_on_the_ct_window_sees_noise_in_brain() -> None:
    clean = ct_head(160)
    window = clinical_window("CT", "head", clean)
    assert window == (0.0, 80.0)
    assert clinical_window("CT", "head", clean, header_window=(35.0, 100.0)) == (-15.0, 85.0)
    noisy = clean + np.random.default_rng(1).normal(0, 15, clean.shape)
    wide = clinical_window("CT", "chest", clean)  # soft-tissue window: the same noise hides
    assert proxy_metric(clean, noisy, window) < 0.9 < proxy_metric(clean, noisy, wide)
    assert proxy_metric(clean, clean, window) == pytest.approx(1.0)


def test_mapping_is_monotone_bounded_and_validated() -> None:
    m = ProxyMapping()
    scores = [m(x) for x in np.linspace(0, 1, 50)]
    assert all(b >= a for a, b in zip(scores, scores[1:], strict=False))
    assert m(1.0) == 4.0 and m(0.0) == 0.0 and m(0.85) == pytest.approx(2.0)
    assert "0.85->2" in m.describe()
    with pytest.raises(ValueError):
        ProxyMapping(((0.9, 0.0), (0.5, 4.0)))


def test_head_labels_are_the_parameters_or_exact_neutral_values() -> None:
    ct = head_labels("CT", "ct_dose", {"dose_fraction": 0.25})
    assert ct["ct_dose"] == 0.25 and ct["ct_view_undersampling"] == 1.0 and ct["ct_blur_fwhm_mm"] == 0.0
    assert all(ct[h.name] is None for h in HEADS if h.modality == "MR")
    mr = head_labels("MR", "mr_motion", {"motion_rms_mm": 2.5})
    assert mr["mr_motion_rms_mm"] == 2.5 and mr["mr_snr"] is None and mr["mr_acceleration"] == 1.0
    assert head_labels("MR", "mr_truncation", {"keep_fraction": 0.5})["mr_truncation"] == 2.0
    assert head_labels("MR", "mr_noise", {"target_snr": 8.0})["mr_snr"] == 8.0
