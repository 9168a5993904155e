"""Recompute a built data set's quality labels and prompts with this code, without rebuilding its images.

The images and the exact physical labels do not depend on the label rule, so a change of the rule
(labels/proxy.py mapping, labels/severity.py ceilings) or of the prompt's dimension needs no new
simulation: a build takes an hour on two cores, this takes seconds. The arrays are hard-linked (copied
across file systems) into ``<name>-<version>``, the folder a build of the same config by this code writes
(so `mediqa train`, `make eval` find it), and the manifest records what it was made from
(``relabelled_from``). A set whose ``simulation_code`` differs from this code's is refused: its arrays are
not what this code simulates, and only a build makes them. Sets written before that digest was recorded
are taken as they are, and the log says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mediqa.errors import ConfigError
from mediqa.training.datagen.writer import code_version, counts, quality_section, simulation_code, version_of
from mediqa.training.labels.proxy import ProxyMapping
from mediqa.training.labels.severity import capped_quality

log = logging.getLogger(__name__)

ARRAYS = ("images.npy", "clean.npy")
CROSS_SECTIONAL = {"CT", "MR"}  # 3D in the prompt vocabulary even as one slice (sources.SourceSeries)


def relabel_sample(sample: dict[str, Any], mapping: ProxyMapping) -> dict[str, Any]:
    """One manifest entry with its quality and prompt made by this code's rule."""
    out = dict(sample)
    out["quality"], out["quality_ceiling"] = capped_quality(
        mapping(float(sample["quality_metric"])), sample["degradation"]["type"], sample["labels"])
    if sample["modality"] in CROSS_SECTIONAL:
        out["prompt"] = {**sample["prompt"], "dimension": "3D"}
    return out


def relabel(dataset: Path, out_dir: Path | None = None) -> Path:
    """Write the relabelled copy of ``dataset`` next to it (or under ``out_dir``) and return its path."""
    manifest_path = dataset / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{dataset} is not a built data set (no manifest.json)",
                          "give a folder written by `mediqa data build`, e.g. data-out/default-<version>")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    code, simulation = code_version(), simulation_code()
    made_by = manifest.get("simulation_code")
    if made_by is not None and made_by != simulation:
        raise ConfigError(f"{dataset.name} was simulated by other code ({made_by}; this code: {simulation})",
                          f"rebuild it: mediqa data build --config <its config> --out {dataset.parent}")
    if made_by is None:
        log.warning("%s records no simulation digest (made before it was recorded): its arrays are taken as "
                    "what this code simulates; if training/degrade or the data tasks changed since %s, "
                    "rebuild instead", dataset.name, manifest.get("created", "it was made"))
    anchors = manifest["config"]["quality"]["anchors"]
    mapping = ProxyMapping(tuple((float(a), float(b)) for a, b in anchors))
    samples = [relabel_sample(s, mapping) for s in manifest["samples"]]
    version = version_of(manifest["config"], manifest["seed"], code)
    target = (out_dir or dataset.parent) / f"{manifest['name']}-{version}"
    new = {**manifest, "version": version, "code_version": code, "simulation_code": simulation,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "relabelled_from": {"version": manifest["version"], "code_version": manifest["code_version"],
                               "created": manifest.get("created")},
           "quality": quality_section(mapping), "counts": counts(samples), "samples": samples}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in ARRAYS:
        if (dataset / name).exists():
            _link_or_copy(dataset / name, tmp / name)
    (tmp / "manifest.json").write_text(json.dumps(new, indent=1) + "\n", encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    changed = sum(a["quality"] != b["quality"] for a, b in zip(manifest["samples"], samples, strict=True))
    log.info("relabelled %s -> %s (%d of %d quality labels changed)", dataset, target, changed, len(samples))
    return target


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
