"""Configuration: YAML at the edge, typed frozen dataclasses inside, validated once at start.

Unknown keys are errors that name the key and suggest the nearest valid one, so a typo in
``agent.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mediqa.agent.config_alerts import AlertsConfig, check_alerts
from mediqa.agent.config_console import ConsoleConfig
from mediqa.agent.config_dicom import DicomConfig
from mediqa.agent.config_fleet import FleetConfig, check_fleet
from mediqa.agent.config_thresholds import ReviewedThresholds, load_reviewed
from mediqa.backends import BACKEND_NAMES
from mediqa.errors import ConfigError
from mediqa.schema import build_dataclass, check_choice, read_yaml_mapping, set_dotted, to_plain

MODALITIES = ("CT", "MR")


@dataclass(frozen=True)
class WatchConfig:
    folder: str = ""
    mode: str = "native"  # native (inotify / ReadDirectoryChangesW ...) or polling (network shares)
    poll_interval_s: float = 2.0
    reconcile_interval_s: float = 30.0
    file_stable_s: float = 0.5  # size and mtime unchanged this long before a file is parsed
    max_depth: int = 32  # folders deeper than this below the export root are not walked (reported once)
    follow_links: str = "inside"  # inside: follow symlinks only to targets inside the export root; never


@dataclass(frozen=True)
class HeaderLimits:
    """Sanity limits checked on the header before anything is allocated: a poison file is a recorded skip."""

    max_rows: int = 8192
    max_columns: int = 8192
    max_frames: int = 5000  # enhanced multi-frame objects hold a whole series in one file
    max_bits_allocated: int = 32
    max_pixel_bytes: int = 2 * 1024**3  # announced pixel data (rows x columns x frames x samples x bytes)


# Series kinds that are not for quality scoring, decided on the whole series (agent/select/skips.py).
SKIP_KINDS = ("localizer", "phase", "derived_map")


@dataclass(frozen=True)
class IngestConfig:
    skip_derived: bool = True
    skip_localizers: bool = True
    skip_kinds: tuple[str, ...] = SKIP_KINDS  # reported as skipped with the reason, never silently dropped
    max_retries: int = 20  # half-written files are retried this many times, then skipped
    limits: HeaderLimits = field(default_factory=HeaderLimits)
    # Keep the two header-reading worker processes running while the agent runs (about 58 MB each),
    # instead of starting them for a big batch (about 2 s) and stopping them after 30 s unused.
    read_workers_warm: bool = False


@dataclass(frozen=True)
class CompletionConfig:
    quiet_period_s: Mapping[str, float] = field(default_factory=lambda: {"default": 10.0, "CT": 5.0, "MR": 10.0})
    early_on_expected_count: bool = True
    # Opt-in: end the quiet period early once the series' own arrival rhythm has clearly stopped (a silence of
    # adaptive_k x the median gap between its files, and longer than its longest pause), never before
    # adaptive_min_s; a late file re-opens the series and supersedes the result (agent/loop/rhythm.py).
    adaptive: bool = False
    adaptive_k: float = 10.0
    adaptive_min_s: float = 2.0
    # Score a series silent this long ahead of its quiet period's end, while the loop has nothing else to do;
    # the result is saved and shown when the quiet period ends, and only when the series' files are exactly
    # those it was computed from (agent/loop/ahead.py). Costs idle CPU only; 0 turns it off.
    score_ahead_s: float = 1.0
    # While a series that announced its count arrives, pass the slices it will likely choose to the model (at
    # 90, 97 and 99.5 % of its count); at completion only chosen slices whose input was not seen are passed
    # (agent/loop/early.py). The result is computed from the complete series either way. Costs CPU only.
    pass_ahead_on_count: bool = True

    def quiet_for(self, modality: str) -> float:
        return float(self.quiet_period_s.get(modality, self.quiet_period_s.get("default", 10.0)))


@dataclass(frozen=True)
class Threshold:
    retake_below: float = 2.0  # series score on the 0 (bad) .. 4 (excellent) scale
    worst_slice_below: float | None = None  # also retake when one slice is this bad


@dataclass(frozen=True)
class ThresholdRule:
    """Overrides the modality threshold for series whose attributes match every regex in ``match``."""

    match: Mapping[str, str] = field(default_factory=dict)
    retake_below: float | None = None
    worst_slice_below: float | None = None
    name: str = ""


@dataclass(frozen=True)
class ThresholdConfig:
    default: Threshold = field(default_factory=Threshold)
    modality: Mapping[str, Threshold] = field(default_factory=dict)
    rules: tuple[ThresholdRule, ...] = ()
    # A reviewed thresholds file written by ``mediqa calibrate`` (agent/config_thresholds.py): applied only when
    # named here; relative paths live in the state dir. ``reviewed`` is its content, read at load (never YAML).
    reviewed_file: str = ""
    reviewed: ReviewedThresholds | None = None


@dataclass(frozen=True)
class ScoringConfig:
    scorer: str = "learned"  # learned (the ONNX model) or classical (noise measures, the baseline)
    model: str = "default"  # "default" = the embedded edge model, or a path to an .onnx file
    backends: tuple[str, ...] = BACKEND_NAMES
    threads: int = 2
    slices: int = 7
    selection: str = "salient"  # salient or fixed (MedIQA's released index rule)
    engine_cache: str = ""  # empty = <state_dir>/engines
    build_engines: bool = False  # never build on a clinical console unless asked to
    allow_unevaluated_model: bool = False  # run a model whose card lacks an evaluation or misses its floor (WARNING)


@dataclass(frozen=True)
class ReportConfig:
    jsonl: str = "results.jsonl"  # relative paths live in the state dir
    color: str = "auto"  # auto, always, never
    log_paths: str = "key"  # key: files appear in logs as pseudonymous keys; relative: as paths below the export


@dataclass(frozen=True)
class NotifySettings:
    """``notify:``: where retake notifications go (apprise URLs; see docs/notifications.md).

    Plain settings here; ``agent.report.notify.NotifyConfig.of`` validates the destinations with apprise
    at start (the report layer sits above the config, so the config cannot import it).
    """

    destinations: tuple[str, ...] = field(default=(), repr=False)  # may hold credentials: never logged
    on_unscored: bool = False
    max_attempts: int = 20
    backoff_s: float = 5.0
    timeout_s: float = 10.0


@dataclass(frozen=True)
class AgentConfig:
    watch: WatchConfig = field(default_factory=WatchConfig)
    state_dir: str = "~/.local/state/mediqa"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)  # the DICOM node and SR outputs (agent/config_dicom.py)
    notify: NotifySettings = field(default_factory=NotifySettings)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)  # web console, /healthz, /metrics
    fleet: FleetConfig = field(default_factory=FleetConfig)  # what the fleet's alerting rules compare (/metrics)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)  # how long an alert is news (agent/config_alerts.py)
    log_level: str = "INFO"

    @property
    def state_path(self) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(self.state_dir)))

    @property
    def engine_cache_path(self) -> Path:
        """Where engines are built and looked up: ``scoring.engine_cache``, else ``<state_dir>/engines``."""
        if self.scoring.engine_cache:
            return Path(os.path.expandvars(os.path.expanduser(self.scoring.engine_cache)))
        return self.state_path / "engines"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for logs and ``doctor --show-config``: notification URLs are redacted (credentials)."""
        plain = to_plain(self)
        plain["notify"]["destinations"] = [f"{u.split('://')[0]}://<redacted> (destination {i})"
                                           for i, u in enumerate(self.notify.destinations)]
        return plain


_CHOICES: dict[str, tuple[str, ...]] = {
    "watch.mode": ("native", "polling"),
    "scoring.scorer": ("learned", "classical"),
    "scoring.selection": ("salient", "fixed"),
    "report.color": ("auto", "always", "never"),
    "report.log_paths": ("key", "relative"),
    "watch.follow_links": ("inside", "never"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}


def default_config_path() -> Path:
    return Path(str(resources.files("mediqa.configs").joinpath("agent.yaml")))


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Read YAML (the packaged default when ``path`` is None), apply dotted ``overrides``, validate."""
    source = Path(path) if path else default_config_path()
    raw = read_yaml_mapping(source)
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> AgentConfig:
    thresholds = raw.get("thresholds")
    if isinstance(thresholds, Mapping) and "reviewed" in thresholds:
        raise ConfigError("thresholds.reviewed is read from the file named by thresholds.reviewed_file",
                          "write it with mediqa calibrate, review it, and name it in thresholds.reviewed_file")
    cfg = build_dataclass(AgentConfig, raw, "")
    _check(cfg)
    if cfg.thresholds.reviewed_file:  # validated now, like the rest of the config: never a surprise mid-run
        path = Path(os.path.expandvars(os.path.expanduser(cfg.thresholds.reviewed_file)))
        reviewed = load_reviewed(path if path.is_absolute() else cfg.state_path / path, MODALITIES)
        cfg = dataclasses.replace(cfg, thresholds=dataclasses.replace(cfg.thresholds, reviewed=reviewed))
    return cfg


def _check(cfg: AgentConfig) -> None:
    flat = {
        "watch.mode": cfg.watch.mode,
        "scoring.scorer": cfg.scoring.scorer,
        "scoring.selection": cfg.scoring.selection,
        "report.color": cfg.report.color,
        "report.log_paths": cfg.report.log_paths,
        "watch.follow_links": cfg.watch.follow_links,
        "log_level": cfg.log_level.upper(),
    }
    for key, value in flat.items():
        check_choice(key, value, _CHOICES[key])
    for i, backend in enumerate(cfg.scoring.backends):
        check_choice(f"scoring.backends[{i}]", backend, BACKEND_NAMES)
    for i, kind in enumerate(cfg.ingest.skip_kinds):
        check_choice(f"ingest.skip_kinds[{i}]", kind, SKIP_KINDS)
    if cfg.watch.max_depth < 1:
        raise ConfigError("watch.max_depth must be at least 1")
    for name, limit in dataclasses.asdict(cfg.ingest.limits).items():
        if limit < 1:
            raise ConfigError(f"ingest.limits.{name} must be at least 1, got {limit}")
    if cfg.scoring.slices < 1:
        raise ConfigError("scoring.slices must be at least 1")
    if cfg.scoring.threads < 1:
        raise ConfigError("scoring.threads must be at least 1")
    for name, interval in (("watch.poll_interval_s", cfg.watch.poll_interval_s),
                           ("watch.reconcile_interval_s", cfg.watch.reconcile_interval_s)):
        if interval <= 0:
            raise ConfigError(f"{name} must be positive, got {interval}")
    for key, quiet in cfg.completion.quiet_period_s.items():
        _check_key(f"completion.quiet_period_s.{key}", key, ("default", *MODALITIES))
        if quiet < 0:
            raise ConfigError(f"completion.quiet_period_s.{key} must not be negative")
    if cfg.completion.score_ahead_s < 0:
        raise ConfigError("completion.score_ahead_s must not be negative (0 turns scoring ahead off)")
    _check_thresholds(cfg.thresholds)
    check_alerts(cfg.alerts)
    check_fleet(cfg.fleet)


# The attributes a threshold rule can match: exactly what ``agent/pipeline.py:_attributes`` hands the
# decision (a test keeps the two equal). A key outside them would never match: an error, not a silent no-op.
RULE_ATTRIBUTES: tuple[str, ...] = (
    "modality", "series_description", "protocol_name", "body_part", "manufacturer",
    "dimension", "anatomy", "image_type",
    "prompt_dimension", "prompt_modality", "prompt_anatomy", "prompt_image_type",
)
SCORE_SCALE = (0.0, 4.0)  # thresholds live on the score's own scale


def _check_key(where: str, key: str, allowed: tuple[str, ...]) -> None:
    """A mapping key that must be one of ``allowed``: the error names it and the nearest valid one."""
    if key in allowed:
        return
    import difflib

    near = difflib.get_close_matches(key, allowed, n=1) or [a for a in allowed if a.lower() == key.lower()]
    hint = f"did you mean '{near[0]}'?" if near else f"use one of {', '.join(allowed)}"
    raise ConfigError(f"{where}: '{key}' is not a known key here", hint)


def _check_on_scale(where: str, value: float | None) -> None:
    lo, hi = SCORE_SCALE
    if value is not None and not lo <= value <= hi:
        raise ConfigError(f"{where} = {value} is outside the score scale 0..4",
                          "scores run from 0 (bad) to 4 (excellent); retake_below 2.0 is the default")


def _check_thresholds(thresholds: ThresholdConfig) -> None:
    """Every threshold on the 0..4 scale, modality keys known, every rule's regexes compiling on real keys."""
    import re

    for name, threshold in (("default", thresholds.default),
                            *((f"modality.{m}", t) for m, t in thresholds.modality.items())):
        if name.startswith("modality."):
            _check_key(f"thresholds.{name}", name.partition(".")[2], MODALITIES)
        _check_on_scale(f"thresholds.{name}.retake_below", threshold.retake_below)
        _check_on_scale(f"thresholds.{name}.worst_slice_below", threshold.worst_slice_below)
    for i, rule in enumerate(thresholds.rules):
        where = f"thresholds.rules[{i}]" + (f" ({rule.name})" if rule.name else "")
        if not rule.match:
            raise ConfigError(f"{where}.match is empty", "name at least one attribute regex")
        for key, pattern in rule.match.items():
            _check_key(f"{where}.match", key, RULE_ATTRIBUTES)
            try:
                re.compile(str(pattern))
            except re.error as exc:
                raise ConfigError(f"{where}.match.{key}: {pattern!r} is not a valid regular expression ({exc})",
                                  "quote it in the YAML and check brackets and escapes") from None
        _check_on_scale(f"{where}.retake_below", rule.retake_below)
        _check_on_scale(f"{where}.worst_slice_below", rule.worst_slice_below)
