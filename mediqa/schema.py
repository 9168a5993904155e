"""Typed config schemas: YAML mappings in, frozen dataclasses out, validated the same way everywhere.

Part of the contract floor (imports nothing of ours). Every config of the project (agent, data sets,
training) is built through ``build_dataclass``, so unknown keys fail with a "did you mean" and values
are typed the same way in all of them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from mediqa.errors import ConfigError

T = TypeVar("T")


def read_yaml_mapping(source: Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping at the top level (an empty file is an empty mapping)."""
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist", "pass --config PATH, or omit it") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source} must hold a mapping at the top level")
    return raw


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
            hint = ('YAML reads off/on/yes/no as true/false: quote the word, e.g. "off"'
                    if isinstance(value, bool) else None)
            raise ConfigError(f"{where} must be text, got {value!r}", hint)
        return str(value)
    return value


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
