"""The real-series evaluation: series written as DICOM go through the real agent; tables count what they say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediqa.agent.dicom.volume import plan_series
from mediqa.cli.eval_real import DegradedCache, DegradingScorer, _row, agent_config, degrade_slices
from mediqa.training.eval_real_series import controls, pydicom_series, write_series
from mediqa.training.eval_real_tables import Row, false_alert_table, summary, write_tables


def test_written_series_reads_back_in_hu_with_its_geometry(tmp_path):
    vol = np.stack([np.full((32, 40), v, np.float64) for v in (-1000.0, 0.0, 300.0)])
    write_series(tmp_path / "s", vol, "CT", (0.8, 0.9), 2.5, "ABDOMEN full dose", "ABDOMEN")
    from mediqa.agent.dicom.index import scan_tree

    (records,) = scan_tree(tmp_path / "s").values()
    layout = plan_series(records)
    assert layout.modality == "CT" and layout.n_slices == 3
    assert layout.slice_spacing == pytest.approx(2.5)
    read = layout.read_all()
    assert read.shape == (3, 32, 40)
    assert sorted(float(read[k].mean()) for k in range(3)) == pytest.approx([-1000.0, 0.0, 300.0])
    import pydicom

    assert all(not str(pydicom.dcmread(r.path).PatientName) for r in records)  # never a name in a written file


def _pydicom(name: str):
    found = [s for s in pydicom_series() if name in s.name]
    if not found:
        pytest.skip(f"pydicom test file {name} not found (pip install pydicom-data)")
    return found[0]


@pytest.mark.slow
def test_controls_are_never_scored_ok_by_the_classical_agent(tmp_path):
    config = agent_config(tmp_path / "state", None)
    from mediqa.agent.scoring.factory import make_scorer

    scorer = make_scorer(config)
    rows = [_row(s, "classical", "control", "none", "control", {}, scorer, config) for s in controls(tmp_path / "c")]
    assert len(rows) == 5 and {r.modality for r in rows} == {"CT", "MR"}
    assert all(r.decision != "ok" for r in rows), [(r.series, r.decision, r.reasons) for r in rows]


@pytest.mark.slow
def test_severe_ct_dose_raises_the_noise_of_a_real_body_slice():
    pancreas = _pydicom("explicit_VR-UN")
    layout = plan_series(pancreas.records)
    image = layout.read_all()[:1, 160:352, 160:352]  # a 192 px patch keeps the projection quick
    low = degrade_slices(image, (0.86, 0.86), "", "ct_dose", 0.1)
    from mediqa.measures import global_noise_level

    before, after = global_noise_level(image, 0.86), global_noise_level(low, 0.86)
    assert after > 2.0 * before  # noise ~ 1/sqrt(dose): about 3.2x at 10 %
    same = degrade_slices(image, (0.86, 0.86), "", "ct_dose", 0.1)
    assert np.array_equal(low, same)  # seeded: every scorer sees the same pixels


def test_degrading_scorer_hands_the_inner_scorer_degraded_pixels(tmp_path):
    seen: list[float] = []

    class Probe:
        name, backend = "probe", "numpy"

        def score(self, series):
            from mediqa.agent.scoring.base import SliceScores

            seen.append(float(np.std(series.slices)))
            return SliceScores(scores=tuple(3.0 for _ in range(series.slices.shape[0])))

        def close(self):
            return None

    mr = _pydicom("MR_small")
    config = agent_config(tmp_path / "state", None)
    clean = _row(mr, "probe", "clean", "none", "clean", {}, Probe(), config)
    wrapped = DegradingScorer(Probe(), "mr_noise", 3.0, DegradedCache())
    noisy = _row(mr, "probe", "severe", "mr_noise", "SNR 3", {}, wrapped, config)
    assert clean.decision == noisy.decision == "ok" and len(seen) == 2
    assert seen[1] != pytest.approx(seen[0])


def _r(kind: str, split: str, decision: str, scorer: str = "m", anatomy: str = "abdomen") -> Row:
    return Row(series=f"{kind}-{split}-{decision}-{anatomy}", origin="shared", subject="human", modality="CT",
               anatomy=anatomy, vendor="GE", split=split, kind=kind, family="none", level="clean", scorer=scorer,
               score=1.0 if decision == "retake" else (math.nan if decision == "unscored" else 3.0),
               decision=decision, reasons=())


def test_false_alerts_count_only_clean_held_out_scored_series(tmp_path):
    rows = [_r("clean", "test", "retake"), _r("clean", "none", "ok"), _r("clean", "train", "retake"),
            _r("clean", "val", "unscored"), _r("control", "none", "ok"), _r("severe", "test", "retake"),
            _r("clean", "val", "ok", anatomy="head")]
    table = "\n".join(false_alert_table(rows))
    assert "| CT | abdomen | 1 of 2 |" in table and "| CT | head | 0 of 1 |" in table
    assert "| all | all | 1 of 3 |" in table
    assert "| m | 1 of 3 | 2 of 4 | 1 of 1 | 1 of 1 |" in "\n".join(summary(rows))
    path = write_tables(rows, tmp_path)
    assert path.read_text().count("| clean-test-retake-abdomen |") == 1
