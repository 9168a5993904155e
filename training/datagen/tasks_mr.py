"""All degradations of one MR slice (noise, 2D motion, ghost, spike, bias, undersampling, truncation),
and 3D motion of a slab of partitions of a 3D acquisition.

The phase-encode axis comes from the series header (InPlanePhaseEncodingDirection); the source's own noise
is measured once per slice from its background and reused by every SNR level.
"""

from __future__ import annotations

import logging

import numpy as np

from mediqa.training.datagen.config import DataConfig
from mediqa.training.datagen.made import Made, rng_for
from mediqa.training.datagen.sources import SourceSeries
from mediqa.training.degrade.base import Degraded
from mediqa.training.degrade.kspace import pe_axis
from mediqa.training.degrade.mr_bias import simulate_bias
from mediqa.training.degrade.mr_ghost import simulate_ghost
from mediqa.training.degrade.mr_kspace import simulate_truncation, simulate_undersampling
from mediqa.training.degrade.mr_motion import simulate_motion_2d, simulate_motion_3d
from mediqa.training.degrade.mr_noise import estimate_noise, simulate_snr
from mediqa.training.degrade.mr_spike import simulate_spike

log = logging.getLogger(__name__)


def mr_slice_degradations(src: SourceSeries, k: int, cfg: DataConfig) -> Made:
    image = np.maximum(src.volume[k].astype(np.float64), 0.0)
    axis = pe_axis(src.pe_direction, image.shape)
    mr = cfg.mr
    made: Made = []

    def rng(kind: str, level: int) -> np.random.Generator:
        return rng_for(cfg, src, k, kind, level)

    if mr.include_clean:
        made.append((k, 0, Degraded("none", image, {"pe_axis": axis}), image))
    noise = estimate_noise(image)
    for level, snr in enumerate(mr.snr):
        out = simulate_snr(image, snr, rng("mr_noise", level), source=noise)
        if out is not None:
            made.append((k, level, out, image))
    for level, mm in enumerate(mr.motion_mm):
        made.append((k, level, simulate_motion_2d(image, axis, src.spacing_mm, rng("mr_motion", level), mm, mm),
                     image))
    made += [(k, level, simulate_ghost(image, axis, g), image) for level, g in enumerate(mr.ghost)]
    made += [(k, level, simulate_spike(image, rng("mr_spike", level), a), image) for level, a in enumerate(mr.spike)]
    made += [(k, level, simulate_bias(image, rng("mr_bias", level), s), image) for level, s in enumerate(mr.bias)]
    made += [(k, level, simulate_undersampling(image, axis, r, rng("mr_undersample", level)), image)
             for level, r in enumerate(mr.acceleration)]
    made += [(k, level, simulate_truncation(image, f), image) for level, f in enumerate(mr.truncation_keep)]
    return made


def mr_motion3d_samples(src: SourceSeries, centre: int, level: int, cfg: DataConfig) -> Made:
    """Move a slab of ``mr.motion_3d_slab`` partitions; keep slices away from the slab's wrap-around ends."""
    n = src.volume.shape[0]
    half = min(cfg.mr.motion_3d_slab, n) // 2
    lo, hi = max(0, centre - half), min(n, centre + half)
    slab = np.maximum(src.volume[lo:hi].astype(np.float64), 0.0)
    axis = 1 + pe_axis(src.pe_direction, slab.shape[1:])
    step = src.slice_step_mm or src.spacing_mm[0]
    mm = cfg.mr.motion_3d_mm[level]
    rng = rng_for(cfg, src, centre, "mr_motion3d", level)
    moved = simulate_motion_3d(slab, axis, (step, *src.spacing_mm), rng, mm, mm)
    inner = np.linspace(0.25 * (hi - lo), 0.75 * (hi - lo), num=min(src.spec.slices, hi - lo))
    made: Made = []
    for j in sorted({int(round(v)) for v in inner}):
        made.append((lo + j, len(cfg.mr.motion_mm) + level, moved.slice(j), src.volume[lo + j].astype(np.float64)))
    return made
