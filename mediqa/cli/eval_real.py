"""The real-series table: every real series end to end through the agent, controls, and severe simulations.

An evaluation harness over two applications (the agent's pipeline and training's data splits and
degradations), so it lives in the CLI layer, the one floor that may import both (docs/architecture.md).

``python -m mediqa.cli.eval_real --model "new=m.onnx" --model "old=old.onnx" --data data-out/<set>``
scores, with each model (and the classical scorer), through ``agent.pipeline.analyse_series``: the agent's
reader, skips, prompt rules, slice selection, content check, scorer and decision rule.

- clean: every real series (``eval_real_series``), with the data set split it was used in (train, val,
  test, or none: never in the data set), so the false-alert rate is reported on what training never saw;
- controls: empty and noise-only series, which must never be scored ok;
- severe: the most severe simulated level of each degradation family on every real source (CT dose 10 %
  in the projection domain; MR Rician noise at SNR 3 and 2D k-space motion of 4 mm: the top of the data
  set's grids), applied to the slices the agent selected (the content check saw the clean slices).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mediqa.agent.config import AgentConfig, config_from_dict
from mediqa.agent.pipeline import analyse_series
from mediqa.agent.scoring.base import Scorer, SeriesInput, SliceScores
from mediqa.errors import MediqaError
from mediqa.training.eval_real_series import RealSeries, controls, nifti_series, pydicom_series, shared_series
from mediqa.training.eval_real_tables import Row, write_tables

log = logging.getLogger(__name__)

SEVERE: dict[str, tuple[tuple[str, str, float], ...]] = {
    "CT": (("ct_dose", "dose 10 %", 0.1),),
    "MR": (("mr_noise", "SNR 3", 3.0), ("mr_motion", "motion 4 mm", 4.0)),
}
SEED = 20251201
VIEWS = 180  # projection views of the severe CT dose simulation (the data set uses 360; noise is calibrated
# to each slice's own either way, and half the views halves the minutes on a 2-core machine)


def degrade_slices(slices: np.ndarray, spacing: tuple[float, float], pe_direction: str, family: str,
                   value: float) -> np.ndarray:
    """``slices`` [K, H, W] at one severe level; a slice the simulation cannot apply to is left as it is."""
    from mediqa.measures import global_noise_level
    from mediqa.training.degrade.base import child_rng
    from mediqa.training.degrade.ct_dose import calibrate_i0, simulate_dose
    from mediqa.training.degrade.ct_project import Projection
    from mediqa.training.degrade.kspace import pe_axis
    from mediqa.training.degrade.mr_motion import simulate_motion_2d
    from mediqa.training.degrade.mr_noise import estimate_noise, simulate_snr

    out = np.array(slices, dtype=np.float32, copy=True)
    for k, image in enumerate(np.asarray(slices, dtype=np.float64)):
        rng = child_rng(SEED, family, k)
        try:
            if family == "ct_dose":
                proj = Projection.of(image, spacing[0], VIEWS)
                calib = calibrate_i0(proj, lambda im: global_noise_level(im[None], spacing[0]), rng)
                out[k] = simulate_dose(proj, value, calib, rng).image
            elif family == "mr_noise":
                img = np.maximum(image, 0.0)
                noisy = simulate_snr(img, value, rng, source=estimate_noise(img))
                if noisy is not None:
                    out[k] = noisy.image
            else:
                img = np.maximum(image, 0.0)
                out[k] = simulate_motion_2d(img, pe_axis(pe_direction, img.shape), spacing, rng, value, value).image
        except ValueError as exc:
            log.warning("%s not simulated on one slice: %s", family, exc)
    return out


class DegradedCache:
    """Degraded slices by (series, family, level, selected slices): in memory, and on disk when given a folder
    (a second run, with another model, reuses the simulation instead of repeating minutes of projections)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.memory: dict[str, np.ndarray] = {}

    def get(self, key: tuple[Any, ...], make: Callable[[], np.ndarray]) -> np.ndarray:
        name = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:20]
        if name in self.memory:
            return self.memory[name]
        path = self.folder / f"{name}.npy" if self.folder is not None else None
        if path is not None and path.is_file():
            value = np.load(path, allow_pickle=False)
        else:
            value = make()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, value, allow_pickle=False)
        self.memory[name] = value
        return value


class DegradingScorer:
    """Delegates to ``inner`` after degrading the selected slices (cached: every scorer sees the same pixels)."""

    def __init__(self, inner: Scorer, family: str, value: float, cache: DegradedCache) -> None:
        self.inner, self.family, self.value, self.cache = inner, family, value, cache
        self.name, self.backend = inner.name, inner.backend
        self.provenance = getattr(inner, "provenance", None)

    def score(self, series: SeriesInput) -> SliceScores:
        layout = series.layout
        spacing = layout.pixel_spacing or (1.0, 1.0)
        key = (layout.series_key, self.family, self.value, [int(i) for i in series.selection.indices],
               list(series.slices.shape))
        degraded = self.cache.get(key, lambda: degrade_slices(
            series.slices, (float(spacing[0]), float(spacing[1])), layout.first.phase_encode_direction,
            self.family, self.value))
        return self.inner.score(dataclasses.replace(series, slices=degraded))

    def close(self) -> None:
        return None


def agent_config(state: Path, model: Path | None) -> AgentConfig:
    scoring: dict[str, Any] = {"scorer": "classical"}
    if model is not None:  # the models under evaluation may not carry their evaluation block yet
        scoring = {"scorer": "learned", "model": str(model), "backends": ["onnxruntime-cpu"], "threads": 2,
                   "allow_unevaluated_model": True}
    return config_from_dict({"state_dir": str(state), "scoring": scoring})


def split_of(data: Path | None) -> dict[str, str]:
    """series_key -> the split the data set used it in (empty without a data set)."""
    if data is None:
        return {}
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    return {s["series_key"]: s["split"] for s in manifest["samples"]}


def _row(series: RealSeries, label: str, kind: str, family: str, level: str, splits: dict[str, str],
         scorer: Scorer, config: AgentConfig) -> Row:
    try:
        result = analyse_series(series.records, scorer, config).result
        score, decision, reasons = result.score, result.decision, tuple(result.reasons)
        anatomy = str(result.prompt.get("anatomy", "unknown")) if result.prompt else "unknown"
        key = result.series_key
    except MediqaError as exc:
        score, decision, reasons, anatomy, key = math.nan, "unscored", (str(exc),), "unknown", ""
    return Row(series=series.name, origin=series.origin, subject=series.subject, modality=series.modality,
               anatomy=anatomy, vendor=series.vendor, split=splits.get(series.train_key or key, "none"), kind=kind,
               family=family, level=level, scorer=label, score=float(score), decision=decision, reasons=reasons)


def evaluate_real(models: Sequence[tuple[str, Path | None]], shared: Path, out: Path,
                  data: Path | None = None, work: Path | None = None) -> list[Row]:
    """Score everything with every model; ``work`` keeps the written series and simulations for the next run."""
    splits = split_of(data)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mediqa-real-") as tmp:
        written = work or Path(tmp)
        real = shared_series(shared / "dicom") if (shared / "dicom").is_dir() else []
        real += pydicom_series()
        if (shared / "nifti" / "totalsegmentator").is_dir():
            real += nifti_series(shared / "nifti" / "totalsegmentator", written / "nifti", views=VIEWS)
        ctrl = controls(written / "controls")
        cache = DegradedCache(work / "degraded" if work is not None else None)
        for label, model in models:
            config = agent_config(written / f"state-{len(rows)}", model)
            from mediqa.agent.scoring.factory import make_scorer

            scorer = make_scorer(config)
            try:
                for series in real:
                    rows.append(_row(series, label, "clean", "none", "clean", splits, scorer, config))
                for series in ctrl:
                    rows.append(_row(series, label, "control", "none", "control", splits, scorer, config))
                for series in real:
                    if series.subject == "phantom" and series.origin == "shared" and series.modality == "MR":
                        continue  # a bottle or box: no anatomy to move or to bury in noise
                    if series.name.endswith("(as stored)"):
                        continue  # noise-free: the dose simulation calibrates on the full-dose version
                    for family, level, value in SEVERE.get(series.modality, ()):
                        wrapped = DegradingScorer(scorer, family, value, cache)
                        rows.append(_row(series, label, "severe", family, level, splits, wrapped, config))
            finally:
                scorer.close()
            log.info("%s: %d rows", label, len(rows))
    write_tables(rows, out)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mediqa.cli.eval_real", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH",
                        help="an ONNX model to score with (repeatable); the classical scorer is always added")
    parser.add_argument("--data", type=Path, default=None, help="the built data set whose splits to report")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data",
                        help="the shared data folder (dicom/, nifti/)")
    parser.add_argument("--out", type=Path, default=Path("runs/eval-real"))
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the written series and simulated levels here and reuse them next time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    models: list[tuple[str, Path | None]] = [("classical", None)]
    for item in args.model:
        label, _, path = item.rpartition("=")
        models.append((label or Path(path).stem, Path(path)))
    evaluate_real(models, args.shared, args.out, args.data, args.work)
    log.info("tables in %s", args.out / "real-series.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
