"""Synthetic calibration rows with a known structure, for the calibration tests."""

from __future__ import annotations

import numpy as np

from mediqa.agent.calibration.sources import SeriesRow


def row(score: float, label: str | None, description: str = "STD Brain 5mm", modality: str = "CT",
        threshold: float = 2.0, uid: str = "", **extra: object) -> SeriesRow:
    fields: dict[str, object] = {
        "series_uid": uid or f"1.2.{score:.6f}.{label}.{description}", "modality": modality,
        "series_description": description, "anatomy": "head", "score": score,
        "decision": "retake" if score < threshold else "ok", "worst": None, "worst_slice_below": None,
        "threshold_source": f"modality {modality}", "model": "edge-default 0123456789ab", "origin": "state",
        "label": label}
    fields.update(extra)
    return SeriesRow(**fields)  # type: ignore[arg-type]


def brain_and_abdomen(seed: int = 0) -> list[SeriesRow]:
    """A protocol with plenty of labels (good ~ N(3.0, 0.4), bad ~ N(1.2, 0.5)) and one with too few."""
    rng = np.random.default_rng(seed)
    rows = [row(float(s), "good") for s in rng.normal(3.0, 0.4, 200)]
    rows += [row(float(s), "bad") for s in rng.normal(1.2, 0.5, 40)]
    rows += [row(float(s), None) for s in rng.normal(2.8, 0.6, 60)]
    rows += [row(s, lab, "Abdomen 1.25mm") for s, lab in ((1.8, "good"), (1.9, "good"), (1.0, "bad"), (2.6, None))]
    return rows


def write_state(state_dir, series) -> dict[str, int]:
    """A state dir made by the agent's own store and feedback code: ``series`` is (uid, description, modality,
    score, answer or None) and the decision is the agent's (retake below 2.0). Returns uid -> result id."""
    from dataclasses import replace

    from mediqa.agent.report.feedback import record_feedback
    from mediqa.agent.report.store import ResultStore
    from mediqa.agent.scoring.base import SeriesResult
    from mediqa.agent.select.selection import Selection
    from mediqa.agent.state.db import open_state

    template = SeriesResult(
        series_uid="", series_key="s-test", modality="CT", series_number=2, series_description="",
        n_instances=20, n_slices=20, score=0.0, decision="ok", reasons=(), worst=None, slice_scores=(1.0,),
        selection=Selection(indices=(0,), weights=(1.0,)), prompt={"anatomy": "head"}, measures={},
        scorer="learned", backend="onnxruntime-cpu", threshold={"retake_below": 2.0, "worst_slice_below": 1.0,
                                                                "source": "modality CT"},
        processing_ms=1.0, model_name="edge-default", model_version="1", model_sha256="0123456789abcdef" * 4)
    db = open_state(state_dir)
    ids: dict[str, int] = {}
    try:
        store = ResultStore(db, state_dir / "results.jsonl")
        for uid, description, modality, score, answer in series:
            result = replace(template, series_uid=uid, series_description=description, modality=modality,
                             score=score, decision="unscored" if score != score else "retake" if score < 2.0 else "ok")
            with db.transaction() as conn:
                saved = store.add(conn, result, 0)
            ids[uid] = saved.result_id
            if answer:
                record_feedback(db, saved.result_id, answer, initials="RT")
        store.flush_jsonl()
    finally:
        db.close()
    return ids
