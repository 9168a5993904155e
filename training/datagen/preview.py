"""``mediqa data preview``: a PNG grid, one row per source, one column per degradation level.

Meant for a person to check the physics by eye: noise grain growing as dose falls, streaks under sparse
views, ghosts along the phase-encode axis only, smooth shading for bias. Each cell shows the stored crop on
the window its proxy label was computed on, and the proxy quality (0..4) with the metric.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mediqa.training.datagen.config import DataConfig

log = logging.getLogger(__name__)

_SHORT = {"dose_fraction": "dose", "n_views": "views", "fwhm_mm": "fwhm", "slab_slices": "slab",
          "target_snr": "SNR", "motion_rms_mm": "rms mm", "intensity": "ghost", "relative_amplitude": "spike",
          "strength": "bias", "acceleration": "R", "keep_fraction": "keep", "sigma_hu": "+HU"}
_MAIN = {"ct_dose": "dose_fraction", "ct_noise": "sigma_hu", "ct_sparse": "n_views", "ct_blur": None,
         "mr_noise": "target_snr",
         "mr_motion": "max_translation_mm", "mr_ghost": "intensity", "mr_spike": "relative_amplitude",
         "mr_bias": "strength", "mr_undersample": "acceleration", "mr_truncation": "keep_fraction"}


def column_title(deg: dict[str, Any]) -> str:
    kind, params = deg["type"], deg.get("params", {})
    if kind == "none":
        return "clean"
    if kind == "ct_blur":
        return f"slab {params['slab_slices']}" if params.get("mode") == "slab" else f"fwhm {params['fwhm_mm']}mm"
    if kind == "mr_motion":
        return f"motion{params.get('dimension', '')} {params['max_translation_mm']}mm"
    key = _MAIN.get(kind)
    value = params.get(key) if key else None
    return f"{_SHORT.get(key or '', kind)} {value:g}" if isinstance(value, (int, float)) else kind


def render_grid(entries: Sequence[dict[str, Any]], images: np.ndarray, out: Path, title: str) -> Path:
    """Draw one block per modality: rows = sources, columns = (degradation, level) in data set order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = []
    for modality in ("CT", "MR"):
        rows: dict[str, dict[tuple[str, int], int]] = {}
        columns: dict[tuple[str, int], str] = {}
        for i, e in enumerate(entries):
            if e["modality"] != modality:
                continue
            col = (e["degradation"]["type"], e["degradation"].get("level", 0))
            columns.setdefault(col, column_title(e["degradation"]))
            rows.setdefault(e.get("source_name", e["source"]), {}).setdefault(col, i)
        if rows:
            kinds = list(dict.fromkeys(k for k, _ in columns))
            ordered = {c: columns[c] for c in sorted(columns, key=lambda c: (kinds.index(c[0]), c[1]))}
            blocks.append((modality, rows, ordered))
    if not blocks:
        raise ValueError("no samples to preview")
    n_cols = max(len(c) for _, _, c in blocks)
    n_rows = sum(len(r) + 1 for _, r, _ in blocks)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.35 * n_cols, 1.45 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    r = 0
    for modality, rows, columns in blocks:
        axes[r, 0].text(0.0, 0.3, f"{modality}: rows = sources, columns = degradation levels", fontsize=9,
                        fontweight="bold", transform=axes[r, 0].transAxes)
        r += 1
        for name, cells in rows.items():
            for c, (col, label) in enumerate(columns.items()):
                ax = axes[r, c]
                if col not in cells:
                    continue
                e = entries[cells[col]]
                lo, hi = e.get("window") or (float(images[cells[col]].min()), float(images[cells[col]].max()))
                ax.imshow(images[cells[col]], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                ax.set_title(f"{label}\nq={e['quality']:.1f} m={e['quality_metric']:.2f}", fontsize=6, pad=2)
                if c == 0:
                    ax.text(-0.05, 0.5, f"{name}\n{e['vendor']} {e.get('split', '')}", fontsize=6, ha="right",
                            va="center", transform=ax.transAxes)
            r += 1
    fig.suptitle(f"{title} - proxy quality q is physics-derived, not an expert score", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.99, top=0.96, bottom=0.01, wspace=0.05, hspace=0.45)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    log.info("preview written to %s", out)
    return out


def preview_from_dataset(folder: Path, out: Path, split: str | None = None) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    images = np.load(folder / "images.npy", mmap_mode="r")
    entries = [e for e in manifest["samples"] if split is None or e["split"] == split]
    # One cell per (source, degradation, level): the first stored sample, usually all from one slice
    # (3D motion samples come from the slab's own slices).
    chosen: dict[tuple[str, str, int], dict[str, Any]] = {}
    for e in entries:
        key = (e.get("source_name", e["source"]), e["degradation"]["type"], e["degradation"].get("level", 0))
        chosen.setdefault(key, e)
    keep = list(chosen.values())
    stack = np.stack([np.asarray(images[e["index"]]) for e in keep])
    return render_grid(keep, stack, out, f"{manifest['name']}-{manifest['version']}")


def preview_from_config(cfg: DataConfig, out: Path) -> Path:
    """Degrade the middle slice of every source in-process, without writing a data set."""
    from mediqa.training.datagen.builder import load_sources
    from mediqa.training.datagen.splits import assign_splits
    from mediqa.training.datagen.tasks import plan_tasks, run_task

    mid = tuple(dataclasses.replace(s, slices=1, slice_range=(0.5, 0.5)) for s in cfg.sources)
    cfg = dataclasses.replace(cfg, sources=mid)
    sources, _ = load_sources(cfg)
    splits = assign_splits(((s.spec.group_id, s.vendor) for s in sources), cfg.splits)
    samples = [s for t in plan_tasks(cfg, sources) for s in run_task((t, cfg))]
    entries = [{**s.meta, "split": splits[s.meta["group"]]} for s in samples]
    return render_grid(entries, np.stack([s.image for s in samples]), out, f"{cfg.name} (from config)")
