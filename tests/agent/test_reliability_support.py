"""Helpers shared by the reliability tests (``test_reliability_*.py``); no tests here.

Generated phantom CT series (``write_phantom_ct``), the classical scorer and an injected clock, so
nothing sleeps and nothing needs ../shared.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from mediqa.agent.config import AgentConfig, Threshold, config_from_dict
from mediqa.agent.samples import write_phantom_ct
from mediqa.agent.scoring.classical import ClassicalScorer
from mediqa.agent.service import Agent

SIZE = 96  # the smallest phantom the classical scorer measures


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def always_retake(cfg: AgentConfig) -> AgentConfig:
    """Every series a retake: a threshold above the 0..4 scale, which a config file may not hold (validated
    at load), set on the loaded config for tests that need alerts from clean phantoms."""
    return dataclasses.replace(cfg, thresholds=dataclasses.replace(cfg.thresholds, modality={},
                                                                   default=Threshold(retake_below=math.inf)))


def config(state: Path, stable_s: float = 0.0, retake_all: bool = False, **extra: Any) -> AgentConfig:
    raw: dict[str, Any] = {"state_dir": str(state), "completion": {"quiet_period_s": {"default": 1.0}},
                           "watch": {"file_stable_s": stable_s, "reconcile_interval_s": 3600.0},
                           "scoring": {"scorer": "classical"}}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    cfg = config_from_dict(raw)
    return always_retake(cfg) if retake_all else cfg


def make_series(tmp_path: Path, name: str, slices: int, noise_hu: float = 5.0, seed: int = 0) -> list[Path]:
    """A phantom CT series outside the export folder, files in position order."""
    src = tmp_path / "src" / name
    write_phantom_ct(src, noise_hu=noise_hu, seed=seed, slices=slices, size=SIZE)
    return sorted(src.iterdir())


def copy(files: list[Path], dest: Path | str, names: list[str] | None = None) -> list[str]:
    os.makedirs(dest, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        target = os.path.join(dest, names[i] if names else f.name)
        shutil.copyfile(f, target)
        out.append(target)
    return out


def series_uid(path: Path | str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def noisy_rewrite(path: Path | str, sigma: float, seed: int) -> None:
    """Rewrite a file in place with added noise: same UIDs, same size, new content."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float64)
    arr = arr + np.random.default_rng(seed).normal(0, sigma, arr.shape) * (arr > 0)
    ds.PixelData = np.clip(np.round(arr), 0, 4095).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def jsonl(state: Path) -> list[dict[str, Any]]:
    """Valid lines of results.jsonl (a torn line is no result)."""
    path = state / "results.jsonl"
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def agent(state: Path, export: Path, clock: Clock, results: list | None = None, stable_s: float = 0.0,
          on_result: Any = None, **extra: Any) -> Agent:
    if on_result is None and results is not None:
        def on_result(r, i):
            results.append(r)
    return Agent(config(state, stable_s, **extra), ClassicalScorer(), export, clock=clock, on_result=on_result)


def settle(a: Agent, clock: Clock, passes: int = 4, dt: float = 1.5) -> None:
    """A few passes with time moving on: stable files indexed, quiet series scored."""
    for _ in range(passes):
        a.step()
        clock.now += dt
    a.step()
