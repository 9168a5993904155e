"""``mediqa eval``: agreement with the labels on a held-out split, and the retake decision.

Every row of the comparison table scores the same samples: a baseline scorer of single slices (``mediqa
eval`` passes the agent core's classical noise scorer, ``Baseline``), any ``--compare`` models (MANIQA
without prompts, the released MedIQA recipe...) and the model under test. Metrics per sample (slice)
overall, per modality and per degradation; the retake decision per series (samples sharing a series
key, a degradation and its level): ROC-AUC against "label below retake_below", and the false-alert
rate on undegraded series. Slice scores are the agent's (mean over a slice's crops, ``predict``); the
series score is a plain mean of its slice scores, where the agent uses an importance-weighted mean: the
data set stores no saliency weights (SERIES_AGGREGATION).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mediqa.model_card import ModelCard
from mediqa.training.eval_metrics import agreement, roc_auc
from mediqa.training.eval_report import scatter_plots, write_report
from mediqa.training.predict import Runner, onnx_runner, predict_samples, torch_runner
from mediqa.training.trainset import BuiltDataSet, open_dataset

logger = logging.getLogger(__name__)

UNDEGRADED = {"none", "clean", "identity", None}
SERIES_AGGREGATION = ("plain mean of slice scores (the data set has no slice importance weights; "
                      "the agent weights slices by saliency)")


@dataclass
class Scored:
    label: str
    quality: np.ndarray
    physics: np.ndarray | None  # [n, P] for learned models
    card: ModelCard | None


SliceScorer = Callable[[np.ndarray, str], float]  # (stored slice in physical units, modality) -> score or NaN


@dataclass(frozen=True)
class Baseline:
    """A scorer of single stored slices for the table's first row (no model card, no physics heads)."""

    label: str
    score_slice: SliceScorer


@contextmanager
def opened_runner(path: Path) -> Iterator[tuple[Runner, ModelCard]]:
    """A checkpoint (torch, 2 threads) or an ONNX file (the engines' ORT CPU backend), closed afterwards."""
    if path.suffix == ".onnx":
        with onnx_runner(path) as opened:
            yield opened
        return
    from mediqa.training.checkpoint import load_model

    model, card, _ = load_model(path)
    yield torch_runner(model, threads=2), card


def score_model(label: str, path: Path, ds: BuiltDataSet, idx: list[int]) -> Scored:
    with opened_runner(path) as (run, card):
        mode = str(card.training.get("input", "crops"))
        q, p = predict_samples(run, ds, idx, card, mode, progress=True)
    return Scored(label, q, p, card)


def score_baseline(baseline: Baseline, ds: BuiltDataSet, idx: list[int]) -> Scored:
    """``baseline`` on each stored slice (NaN where it cannot measure)."""
    out = np.full(len(idx), np.nan)
    for k, i in enumerate(idx):
        out[k] = baseline.score_slice(np.asarray(ds.images[i], dtype=np.float64), str(ds.samples[i]["modality"]))
    return Scored(baseline.label, out, None, None)


def _groups(ds: BuiltDataSet, idx: list[int], key: str) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for k, i in enumerate(idx):
        s = ds.samples[i]
        name = s["modality"] if key == "modality" else str((s.get("degradation") or {}).get("type"))
        groups[name].append(k)
    return dict(sorted(groups.items()))


def undegraded(sample: Mapping[str, Any], heads: Sequence[Mapping[str, Any]]) -> bool:
    """True for a real slice left as acquired: no degradation, or one applied at its identity level.

    A CT dose at fraction 1 returns the original slice; the manifest says so through labels that all
    sit at their heads' neutral values. A head without a neutral value (MR SNR: the source's own SNR
    is unknown) is labelled only when noise was added, so any label there means degraded.
    """
    if (sample.get("degradation") or {}).get("type") in UNDEGRADED:
        return True
    labels = sample.get("labels") or {}
    neutral = {h["name"]: h.get("neutral") for h in heads}
    if not labels or any(name not in neutral for name in labels):
        return False
    return all(_at_neutral(value, neutral[name]) for name, value in labels.items())


def _at_neutral(value: float | None, neutral: float | None) -> bool:
    """An unset label, or one equal to its head's neutral value (a head without one is never neutral)."""
    if value is None:
        return True
    return neutral is not None and math.isclose(float(value), float(neutral))


def series_key(sample: Mapping[str, Any]) -> str:
    """One series = one source series at one degradation level (``level`` when the manifest has it;
    per-slice calibration values in ``params`` must not split a series)."""
    deg = sample.get("degradation") or {}
    level = deg["level"] if "level" in deg else deg.get("params")
    return json.dumps([sample.get("series_key"), deg.get("type"), level], sort_keys=True)


def series_view(ds: BuiltDataSet, idx: list[int], scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per series: mean predicted score, mean label, and whether the series is undegraded.

    A plain mean: stored samples carry no importance weight, so equal weights stand in for the
    agent's saliency weights (both are means of the same per-slice scores).
    """
    buckets: dict[str, list[int]] = defaultdict(list)
    for k, i in enumerate(idx):
        buckets[series_key(ds.samples[i])].append(k)
    pred, truth, clean = [], [], []
    for members in buckets.values():
        pred.append(np.nanmean(scores[members]) if np.isfinite(scores[members]).any() else np.nan)
        truth.append(np.mean([ds.samples[idx[k]]["quality"] for k in members]))
        clean.append(all(undegraded(ds.samples[idx[k]], ds.heads) for k in members))
    return {"pred": np.array(pred), "truth": np.array(truth), "clean": np.array(clean, dtype=bool)}


def row_metrics(ds: BuiltDataSet, idx: list[int], scored: Scored, threshold: float) -> dict[str, Any]:
    truth = np.array([ds.samples[i]["quality"] for i in idx], dtype=np.float64)
    out: dict[str, Any] = {"all": agreement(scored.quality, truth)}
    for key in ("modality", "degradation"):
        out[key] = {name: agreement(scored.quality[m], truth[m]) for name, m in _groups(ds, idx, key).items()}
    series = series_view(ds, idx, scored.quality)
    ok = np.isfinite(series["pred"])
    out["retake_auc"] = roc_auc(-series["pred"][ok], series["truth"][ok] < threshold)
    clean = series["clean"] & ok
    out["false_alert_rate"] = float(np.mean(series["pred"][clean] < threshold)) if clean.any() else math.nan
    out["n_series"], out["n_clean_series"] = int(ok.sum()), int(clean.sum())
    out["coverage"] = float(np.isfinite(scored.quality).mean()) if len(idx) else math.nan
    if scored.physics is not None and scored.card is not None:
        targets = np.stack([ds.targets(i) for i in idx])
        heads: dict[str, Any] = {}
        by_degradation = _groups(ds, idx, "degradation")
        for j, name in enumerate(scored.card.heads):
            per_deg = {d: agreement(scored.physics[m, j], targets[m, j]) for d, m in by_degradation.items()
                       if np.isfinite(targets[m, j]).sum() >= 3}
            heads[name] = {"all": agreement(scored.physics[:, j], targets[:, j]), "degradation": per_deg}
        out["heads"] = heads
    return out


MAIN_LABEL = "ours (MANIQA + prompts, crops)"


def evaluate(model: Path, data: Path, out: Path, split: str = "test", compare: list[tuple[str, Path]] | None = None,
             limit: int | None = None, label: str = MAIN_LABEL, baseline: Baseline | None = None) -> dict[str, Any]:
    ds = open_dataset(data)
    idx = ds.split(split)[:limit]
    if not idx:
        raise ValueError(f"split '{split}' of {ds.root} is empty")
    logger.info("evaluating on %d '%s' samples of %s", len(idx), split, ds.root.name)
    rows: list[Scored] = [score_baseline(baseline, ds, idx)] if baseline is not None else []
    rows += [score_model(label, path, ds, idx) for label, path in compare or []]
    main = score_model(label, model, ds, idx)
    rows.append(main)
    threshold = float((main.card.thresholds if main.card else {}).get("retake_below", 2.0))
    results = {r.label: row_metrics(ds, idx, r, threshold) for r in rows}
    meta = {"data_set": ds.root.name, "data_set_version": ds.version, "split": split, "samples": len(idx),
            "model": str(model), "retake_below": threshold, "series_aggregation": SERIES_AGGREGATION,
            "quality_label": ds.manifest.get("quality", {}).get("kind", "proxy")}
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, meta, results)
    truth = np.array([ds.samples[i]["quality"] for i in idx])
    modality = [ds.samples[i]["modality"] for i in idx]
    scatter_plots(out, rows, truth, modality, ds, idx)
    logger.info("report in %s", out)
    return {"meta": meta, "results": results}
