"""Write a built data set atomically, in the format of docs/dataset-format.md.

Arrays go through ``np.save`` (no timestamps inside) and the manifest is key-ordered JSON, so the same
config, seed and code give the same bytes (only ``created`` differs). The folder is written under a
temporary name and renamed into place, so a half-written set is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import mediqa
import mediqa.measures
from mediqa.training.datagen.config import DataConfig
from mediqa.training.datagen.sample import Sample
from mediqa.training.labels import severity
from mediqa.training.labels.heads import HEADS
from mediqa.training.labels.proxy import KIND, METRIC, ProxyMapping

log = logging.getLogger(__name__)

_CODE_DIRS = ("degrade", "labels", "datagen")


def code_version() -> str:
    """Package version + a digest of the generator's own source: changes exactly when the physics does."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    shared = [Path(mediqa.measures.__file__)]  # the measures the generator shares with the agent
    for path in [*(p for folder in _CODE_DIRS for p in sorted((root / folder).glob("*.py"))), *shared]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{mediqa.__version__}+gen.{digest.hexdigest()[:10]}"


# What makes the arrays (not the labels, prompts or manifest): `mediqa data relabel` refuses a set whose
# arrays this code would not make again.
_LABEL_ONLY = {"writer.py", "relabel.py", "preview.py", "made.py", "__init__.py"}


def simulation_code() -> str:
    """Digest of the code that simulates and crops the images (degrade/, datagen/ but its label-only files)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    paths = [*sorted((root / "degrade").glob("*.py")),
             *(p for p in sorted((root / "datagen").glob("*.py")) if p.name not in _LABEL_ONLY),
             Path(mediqa.measures.__file__)]
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def dataset_version(cfg: DataConfig, code: str) -> str:
    return version_of(cfg.to_dict(), cfg.seed, code)


def version_of(config: dict[str, Any], seed: int, code: str) -> str:
    blob = json.dumps({"config": config, "code": code, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dataset_dir(out_dir: Path, cfg: DataConfig, code: str | None = None) -> Path:
    """Where a build of ``cfg`` by this code goes: ``<out_dir>/<name>-<version>/``."""
    return out_dir / f"{cfg.name}-{dataset_version(cfg, code or code_version())}"


def counts(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"total": len(samples)}
    for key, get in (("modality", lambda s: s["modality"]), ("vendor", lambda s: s["vendor"]),
                     ("degradation", lambda s: s["degradation"]["type"]), ("split", lambda s: s["split"])):
        out[key] = dict(sorted(Counter(get(s) for s in samples).items()))
    out["split_modality_vendor"] = dict(sorted(Counter(
        f"{s['split']}/{s['modality']}/{s['vendor']}" for s in samples).items()))
    out["split_degradation"] = dict(sorted(Counter(
        f"{s['split']}/{s['degradation']['type']}" for s in samples).items()))
    return out


def quality_section(mapping: ProxyMapping) -> dict[str, Any]:
    """How the manifest's ``quality`` values were made (docs/dataset-format.md)."""
    return {"name": "proxy_quality", "scale": [0, 4], "metric": METRIC, "kind": KIND,
            "mapping": mapping.describe(), "rule": severity.LABEL_RULE, "ceilings": severity.describe()}


def write_dataset(out_dir: Path, cfg: DataConfig, samples: Sequence[Sample], splits: dict[str, str],
                  extra: dict[str, Any] | None = None) -> Path:
    """Write ``<out_dir>/<name>-<version>/`` and return its path."""
    code = code_version()
    version = dataset_version(cfg, code)
    target = dataset_dir(out_dir, cfg, code)
    entries = []
    for i, sample in enumerate(samples):
        meta = {"index": i, **sample.meta, "split": splits[sample.meta["group"]]}
        entries.append(meta)
    mapping = ProxyMapping(tuple((float(a), float(b)) for a, b in cfg.quality.anchors))
    manifest = {
        "name": cfg.name, "version": version, "seed": cfg.seed, "code_version": code,
        "simulation_code": simulation_code(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(), "crop_size": cfg.crop_size,
        "heads": [h.to_json() for h in HEADS],
        "quality": quality_section(mapping),
        "splits": dict(sorted(splits.items())),
        "counts": counts(entries),
        **(extra or {}),
        "samples": entries,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    size = cfg.crop_size
    images = np.stack([s.image for s in samples]) if samples else np.zeros((0, size, size), np.float32)
    np.save(tmp / "images.npy", images.astype(np.float32), allow_pickle=False)
    if cfg.store_clean:
        clean = np.stack([s.clean for s in samples]) if samples else np.zeros((0, size, size), np.float32)
        np.save(tmp / "clean.npy", clean.astype(np.float32), allow_pickle=False)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    if target.exists():
        log.info("replacing the existing %s", target)
        shutil.rmtree(target)
    os.replace(tmp, target)
    log.info("wrote %d samples to %s", len(samples), target)
    return target
