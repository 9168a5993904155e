"""Configuration: YAML at the edge, typed frozen dataclasses inside, validated once at start.

Unknown keys are errors that name the key and suggest the nearest valid one, so a typo in
``agent.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from mediqa.agent.errors import ConfigError

T = TypeVar("T")

MODALITIES = ("CT", "MR")


@dataclass(frozen=True)
class WatchConfig:
    folder: str = ""
    mode: str = "native"  # native (inotify / ReadDirectoryChangesW ...) or polling (network shares)
    poll_interval_s: float = 2.0
    reconcile_interval_s: float = 30.0
    file_stable_s: float = 0.5  # size and mtime unchanged this long before a file is parsed


@dataclass(frozen=True)
class IngestConfig:
    skip_derived: bool = True
    skip_localizers: bool = True
    max_retries: int = 20  # half-written files are retried this many times, then skipped


@dataclass(frozen=True)
class CompletionConfig:
    quiet_period_s: Mapping[str, float] = field(default_factory=lambda: {"default": 10.0, "CT": 5.0, "MR": 10.0})
    early_on_expected_count: bool = True

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


@dataclass(frozen=True)
class ScoringConfig:
    scorer: str = "learned"  # learned (the ONNX model) or classical (noise measures, the baseline)
    model: str = "default"  # "default" = the embedded edge model, or a path to an .onnx file
    backends: tuple[str, ...] = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
    threads: int = 2
    slices: int = 7
    selection: str = "salient"  # salient or fixed (MedIQA's released index rule)
    engine_cache: str = ""  # empty = <state_dir>/engines
    build_engines: bool = False  # never build on a clinical console unless asked to


@dataclass(frozen=True)
class ReportConfig:
    jsonl: str = "results.jsonl"  # relative paths live in the state dir
    color: str = "auto"  # auto, always, never


@dataclass(frozen=True)
class AgentConfig:
    watch: WatchConfig = field(default_factory=WatchConfig)
    state_dir: str = "~/.local/state/mediqa"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    log_level: str = "INFO"

    @property
    def state_path(self) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(self.state_dir)))

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


_CHOICES: dict[str, tuple[str, ...]] = {
    "watch.mode": ("native", "polling"),
    "scoring.scorer": ("learned", "classical"),
    "scoring.selection": ("salient", "fixed"),
    "report.color": ("auto", "always", "never"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}
_BACKENDS = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")


def default_config_path() -> Path:
    return Path(str(resources.files("mediqa.configs").joinpath("agent.yaml")))


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Read YAML (the packaged default when ``path`` is None), apply dotted ``overrides``, validate."""
    source = Path(path) if path else default_config_path()
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist", "pass --config PATH, or omit it") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source} must hold a mapping at the top level")
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> AgentConfig:
    cfg = build_dataclass(AgentConfig, raw, "")
    _check(cfg)
    return cfg


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply a ``--set a.b.c=value`` style override to a raw YAML mapping."""
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def build_dataclass(cls: type[T], raw: Any, where: str) -> T:
    """A frozen dataclass from a YAML mapping: unknown keys fail with a "did you mean", values are typed.

    Shared by every config in the project (agent, data sets, training) so they all fail the same way.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean '{_join(where, near[0])}'?" if near else f"valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key '{_join(where, str(key))}'", hint)
        kwargs[key] = _coerce(hints[key], value, _join(where, key))
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict, typing.Mapping) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping")
        key_t, val_t = args if args else (str, Any)
        return types.MappingProxyType({str(k): _coerce(val_t, v, f"{where}.{k}") for k, v in value.items()})
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 as text
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be text, got {value!r}")
        return str(value)
    return value


def _check(cfg: AgentConfig) -> None:
    flat = {
        "watch.mode": cfg.watch.mode,
        "scoring.scorer": cfg.scoring.scorer,
        "scoring.selection": cfg.scoring.selection,
        "report.color": cfg.report.color,
        "log_level": cfg.log_level.upper(),
    }
    for key, value in flat.items():
        check_choice(key, value, _CHOICES[key])
    for i, backend in enumerate(cfg.scoring.backends):
        check_choice(f"scoring.backends[{i}]", backend, _BACKENDS)
    if cfg.scoring.slices < 1:
        raise ConfigError("scoring.slices must be at least 1")
    if cfg.scoring.threads < 1:
        raise ConfigError("scoring.threads must be at least 1")
    for name, value in (("watch.poll_interval_s", cfg.watch.poll_interval_s),
                        ("watch.reconcile_interval_s", cfg.watch.reconcile_interval_s)):
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    for key, quiet in cfg.completion.quiet_period_s.items():
        if quiet < 0:
            raise ConfigError(f"completion.quiet_period_s.{key} must not be negative")
    for i, rule in enumerate(cfg.thresholds.rules):
        if not rule.match:
            raise ConfigError(f"thresholds.rules[{i}].match is empty", "name at least one attribute regex")


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        near = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean '{near[0]}'?" if near else f"choose one of {', '.join(choices)}"
        raise ConfigError(f"{key} = '{value}' is not valid", hint)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def to_plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples (frozen config values) -> dicts and lists, for YAML/JSON output.

    Not ``dataclasses.asdict``: it deep-copies values and cannot copy the read-only mappings we freeze with.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
