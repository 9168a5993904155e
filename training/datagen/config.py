"""Data set config: YAML at the edge, frozen dataclasses inside, validated once, saved in the manifest.

Unknown keys are errors with a "did you mean" (the agent's config machinery, reused). Degradation grids
are physical values: dose fractions, view counts, FWHM in mm, target SNRs, displacements in mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mediqa.errors import ConfigError
from mediqa.schema import build_dataclass, check_choice, to_plain

log = logging.getLogger(__name__)

SOURCE_KINDS = ("dicom", "pydicom", "mni152", "mni152_ct", "nifti_ct", "body_phantom")
CLEAN_ANATOMY_KINDS = ("nifti_ct", "body_phantom")  # noise-free: a routine scan's noise is simulated first
MODALITIES = ("CT", "MR")


@dataclass(frozen=True)
class SourceSpec:
    """One source series. ``path``: folder under data_root (dicom), test file name (pydicom), NIfTI file
    under data_root's parent (nifti_ct), or the region, chest or abdomen (body_phantom)."""

    name: str = ""
    kind: str = "dicom"
    path: str = ""
    modality: str = ""  # required for mni152; read from the headers otherwise
    vendor: str = ""  # empty: from the Manufacturer tag
    group: str = ""  # series that share an acquisition share a group; empty: the name
    anatomy: str = "unknown"
    image_type: str = "unknown"
    slices: int = 8  # slices taken per series, evenly spaced over slice_range
    slice_range: tuple[float, ...] = (0.2, 0.8)
    acquisition_3d: bool = False  # a 3D (partition-encoded) MR acquisition: 3D motion applies
    optional: bool = False  # skip with a warning when absent instead of failing
    contrast: bool = False  # body_phantom: intravenous contrast (portal-venous / arterial blood)

    @property
    def group_id(self) -> str:
        return self.group or self.name


@dataclass(frozen=True)
class SplitConfig:
    test_vendors: tuple[str, ...] = ("GE",)  # every series of these vendors is test, never trained on
    val_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class CTConfig:
    projection_views: int = 360
    dose_fractions: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.1, 0.05)
    sparse_views: tuple[int, ...] = (180, 90, 60)
    blur_fwhm_mm: tuple[float, ...] = (0.8, 1.6, 2.4)
    slab_slices: tuple[int, ...] = (3, 5)  # only for series thinner than slab_max_step_mm
    slab_max_step_mm: float = 1.5
    image_noise_hu: tuple[float, ...] = (5.0, 10.0, 20.0, 30.0, 45.0)  # added in the image domain
    image_noise_max_correlation_mm: float = 1.2  # grain FWHM drawn per sample in [0, this]; 0 = white


@dataclass(frozen=True)
class MRConfig:
    snr: tuple[float, ...] = (30.0, 15.0, 8.0, 4.0)
    motion_mm: tuple[float, ...] = (1.5, 4.0)  # max translation (mm) = max rotation (deg)
    motion_3d_mm: tuple[float, ...] = (2.0, 5.0)
    motion_3d_slab: int = 48  # partitions of a 3D source moved together
    ghost: tuple[float, ...] = (0.2, 0.5)
    spike: tuple[float, ...] = (0.05, 0.2)
    bias: tuple[float, ...] = (0.2, 0.5)
    acceleration: tuple[float, ...] = (2.0, 4.0, 8.0)
    truncation_keep: tuple[float, ...] = (0.5, 0.3)
    include_clean: bool = True


@dataclass(frozen=True)
class QualityConfig:
    anchors: tuple[tuple[float, ...], ...] = ((0.50, 0.0), (0.70, 1.0), (0.85, 2.0), (0.95, 3.0), (0.99, 4.0))


@dataclass(frozen=True)
class DataConfig:
    name: str = "default"
    seed: int = 0
    crop_size: int = 160
    workers: int = 2
    store_clean: bool = True
    data_root: str = ""  # empty: <repo>/../shared/data/dicom
    sources: tuple[SourceSpec, ...] = ()
    splits: SplitConfig = field(default_factory=SplitConfig)
    ct: CTConfig = field(default_factory=CTConfig)
    mr: MRConfig = field(default_factory=MRConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def data_root_path(self) -> Path:
        if self.data_root:
            return Path(self.data_root).expanduser()
        return default_data_root()


def default_data_root() -> Path:
    """``../shared/data/dicom`` next to the repository (where CI and this workplace keep it)."""
    import mediqa

    return Path(mediqa.__file__).resolve().parent.parent.parent / "shared" / "data" / "dicom"


def load_data_config(path: str | Path, overrides: dict[str, Any] | None = None) -> DataConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data config {path} not found", "pass --config configs/data/<name>.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    raw.update(overrides or {})
    cfg = build_dataclass(DataConfig, raw, "")
    check(cfg)
    return cfg


def check(cfg: DataConfig) -> None:
    if not cfg.sources:
        raise ConfigError("no sources configured", "list at least one under 'sources'")
    if cfg.crop_size < 32 or cfg.workers < 1:
        raise ConfigError("crop_size must be >= 32 and workers >= 1")
    names = [s.name for s in cfg.sources]
    for i, src in enumerate(cfg.sources):
        where = f"sources[{i}]"
        if not src.name or names.count(src.name) > 1:
            raise ConfigError(f"{where}: every source needs a unique name, got '{src.name}'")
        check_choice(f"{where}.kind", src.kind, SOURCE_KINDS)
        if src.modality:
            check_choice(f"{where}.modality", src.modality, MODALITIES)
        if src.kind == "mni152" and not src.modality:
            raise ConfigError(f"{where}: mni152 needs modality: MR")
        if src.kind not in ("mni152", "mni152_ct") and not src.path:
            raise ConfigError(f"{where}: path is required for kind {src.kind}")
        if src.kind == "body_phantom":
            check_choice(f"{where}.path", src.path, ("chest", "abdomen"))
        lo, hi = (src.slice_range + (0.0, 1.0))[:2]
        if not 0.0 <= lo <= hi <= 1.0 or src.slices < 1:
            raise ConfigError(f"{where}: slice_range must be within [0, 1] and slices >= 1")
    for views in cfg.ct.sparse_views:
        if views < 1 or cfg.ct.projection_views % views:
            raise ConfigError(f"ct.sparse_views: {views} must divide ct.projection_views "
                              f"({cfg.ct.projection_views})")
    if any(not 0 < d <= 1 for d in cfg.ct.dose_fractions):
        raise ConfigError("ct.dose_fractions must lie in (0, 1]")
    if any(s <= 0 for s in cfg.ct.image_noise_hu) or cfg.ct.image_noise_max_correlation_mm < 0:
        raise ConfigError("ct.image_noise_hu must be > 0 and ct.image_noise_max_correlation_mm >= 0")
    if any(k < 3 or k % 2 == 0 for k in cfg.ct.slab_slices):
        raise ConfigError("ct.slab_slices must be odd and >= 3")
    if any(len(a) != 2 for a in cfg.quality.anchors):
        raise ConfigError("quality.anchors must be [metric, score] pairs")
    groups = {s.group_id for s in cfg.sources}
    for g in cfg.splits.val_groups:
        if g not in groups:
            raise ConfigError(f"splits.val_groups: no source has group '{g}'", f"groups: {sorted(groups)}")

