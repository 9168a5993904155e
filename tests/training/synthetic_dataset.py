"""A tiny data set in the documented format (docs/dataset-format.md), generated in a test's tmp dir.

Smooth random textures plus noise whose level is the label: CT white noise ~ 1/sqrt(dose) in HU,
MR noise at a chosen SNR. Known labels make the training and evaluation tests able to fail.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

HEADS = [
    {"name": "ct_dose", "modality": "CT", "unit": "fraction of reference dose", "transform": "log2",
     "range": [-4.0, 0.0]},
    {"name": "mr_snr", "modality": "MR", "unit": "SNR", "transform": "log2", "range": [1.0, 6.0]},
]
DOSES = (1.0, 0.5, 0.25, 0.1)
SNRS = (40.0, 15.0, 6.0, 3.0)


def make_dataset(root: Path, n_series: int = 12, size: int = 48, seed: int = 0) -> Path:
    """Write ``<root>/synthetic-0000/`` with 4 degradation levels x 2 slices per series; return it."""
    rng = np.random.default_rng(seed)
    images, samples = [], []
    for series in range(n_series):
        modality = "CT" if series % 2 == 0 else "MR"
        split = ("train", "train", "val", "train", "test", "test")[(series // 2) % 6]
        for level in range(4):
            for sl in range(2):
                base = gaussian_filter(rng.normal(size=(size, size)), 3) * 8
                if modality == "CT":
                    dose = DOSES[level]
                    img = 40.0 + 60.0 * base + rng.normal(0, 12.0 / math.sqrt(dose), (size, size))
                    labels = {"ct_dose": dose, "mr_snr": None}
                    quality = float(np.clip(4.0 + 1.1 * math.log2(dose), 0, 4))
                    deg = {"type": "none" if dose == 1.0 else "ct_dose", "params": {"dose_fraction": dose}}
                    norm = None
                else:
                    snr = SNRS[level]
                    clean = 400.0 + 80.0 * base
                    sigma = 400.0 / snr
                    img = np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))
                    labels = {"ct_dose": None, "mr_snr": snr}
                    quality = float(np.clip((math.log2(snr) - 1.5) / 3.8 * 4, 0, 4))
                    deg = {"type": "none" if level == 0 else "mr_noise", "params": {"snr": snr}}
                    norm = [float(v) for v in np.percentile(img, [0.5, 99.5])]
                samples.append({
                    "index": len(samples), "id": f"s{series}-{level}-{sl}", "source": "synthetic", "vendor": "X",
                    "series_key": f"series{series}", "group": f"series{series}", "slice": sl, "split": split,
                    "modality": modality,
                    "prompt": {"dimension": "3D", "modality": modality, "anatomy": "head",
                               "image_type": "ct_soft" if modality == "CT" else "T1"},
                    "degradation": deg, "labels": labels, "quality": quality, "quality_metric": quality,
                    "norm": norm})
                images.append(img.astype(np.float32))
    out = root / "synthetic-0000"
    out.mkdir(parents=True)
    np.save(out / "images.npy", np.stack(images))
    manifest = {"name": "synthetic", "version": "0000", "seed": seed, "config": {}, "code_version": "test",
                "created": "", "crop_size": size, "heads": HEADS,
                "quality": {"name": "proxy_quality", "scale": [0, 4], "metric": "noise level",
                            "kind": "physics-derived proxy, not an expert score", "mapping": "log-linear"},
                "counts": {}, "samples": samples}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
